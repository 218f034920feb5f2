"""`tsfm gc`: old run folders no current output uses are removed; nothing else ever is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import run_tsfm
from tests.splits_fixture import make_splits
from tsfm_cli.gc import collect
from tsfm_cli.stagedir import output_lock
from tsfm_cli.train import TrainConfig, run_train

torch.set_num_threads(1)

TINY = dict(
    archs=["encoder"],
    sizes=[{"d_model": 16, "layers": 1}],
    patch_size=16,
    steps=4,
    batch_size=8,
    warmup_steps=1,
    checkpoints=1,
    eval_windows=2,
    eval_samples=4,
)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@pytest.fixture
def work(tmp_path) -> dict:
    """A workdir whose train output was rerun with a new seed: the first run is now unused."""
    splits = make_splits(tmp_path / "splits", n_series=2, train_length=300, windows=2)
    work = tmp_path / "work"
    out, runs = work / "train", work / "train.runs"
    run_train(splits, out, TrainConfig(**TINY, seeds=[0]), runs_dir=runs)
    (old,) = [p for p in runs.iterdir() if p.is_dir()]
    summary = run_train(splits, out, TrainConfig(**TINY, seeds=[1]), runs_dir=runs)
    (current,) = summary["run_ids"]
    mine = runs / "my_notes"  # the user's, inside tsfm's runs folder
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me\n")
    impostor = runs / "encoder-lookalike"  # a spec.json naming another run: not a run folder
    impostor.mkdir()
    (impostor / "spec.json").write_text(json.dumps({"run_id": "something-else"}))
    unfinished = runs / "encoder-killed-s9-0000"
    unfinished.mkdir()
    (unfinished / "spec.json").write_text(json.dumps({"run_id": unfinished.name}))
    (unfinished / "last.ckpt").write_bytes(b"\0" * 100)
    return {
        "splits": splits,
        "work": work,
        "runs": runs,
        "old": old,
        "current": runs / current,
        "mine": mine,
        "impostor": impostor,
        "unfinished": unfinished,
    }


def test_dry_run_lists_only(work):
    before = snapshot(work["work"])
    result = run_tsfm("gc", work["work"], "--dry-run")
    assert result.returncode == 0, result.stderr
    assert f"{work['old']} would be removed ({size(work['old']):,} bytes)" in " ".join(
        result.stderr.split()
    )
    assert "1 run folders would be removed" in result.stderr
    assert snapshot(work["work"]) == before


def test_gc_removes_unused_finished_runs_only_and_reports_bytes(work):
    expected = size(work["old"])
    result = run_tsfm("gc", work["work"], "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert [r["run_id"] for r in summary["removed"]] == [work["old"].name]
    assert summary["bytes_freed"] == expected > 0
    assert not work["old"].exists()
    assert (work["current"] / "done.json").is_file()
    assert (work["mine"] / "notes.txt").read_text() == "keep me\n"
    assert work["impostor"].is_dir() and work["unfinished"].is_dir()
    why = {Path(k["path"]).name: k["why"] for k in summary["not_removed"]}
    assert why["my_notes"] == why["encoder-lookalike"] == "not a tsfm run folder"
    assert why[work["unfinished"].name].startswith("unfinished")
    # the data stores beside the runs folder are not runs: gc leaves them (README "Scale")
    assert len(list(work["work"].glob("train-store-*"))) == 1
    assert len(list(work["work"].glob("eval-store-*"))) == 1
    again = run_train(work["splits"], work["work"] / "train", TrainConfig(**TINY, seeds=[1]),
                      runs_dir=work["runs"])  # fmt: skip
    assert again["skipped"] is True  # the output it keeps still stands


def test_unfinished_runs_only_on_request_and_runs_in_use_never(work):
    with output_lock(work["unfinished"]):  # another tsfm process is training it
        held = collect(work["work"], unfinished=True)
    assert work["unfinished"].is_dir()
    assert any(k["why"] == "in use by another tsfm run" for k in held["not_removed"])
    freed = collect(work["work"] / "train", unfinished=True)  # the output folder works too
    assert [r["run_id"] for r in freed["removed"]] == [work["unfinished"].name]
    assert not work["unfinished"].exists() and work["current"].is_dir()


def test_gc_of_a_folder_without_tsfm_outputs_exits_2_and_touches_nothing(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"\xff\xd8")
    before = snapshot(tmp_path)
    result = run_tsfm("gc", tmp_path)
    assert result.returncode == 2 and "nothing to do" in result.stderr
    assert snapshot(tmp_path) == before
