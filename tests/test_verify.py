"""Changed bytes are never trusted: outputs, caches, checkpoints and upstream files are hashed
before they are reused or read; damage is named and rebuilt (or refused with exit 2)."""

from __future__ import annotations

import errno
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pytest
import torch
from typer.testing import CliRunner

from tests.conftest import run_tsfm
from tests.ingest_helpers import dataset_files, read_series, write_files
from tests.ood_plant import make_ingest_dir
from tests.splits_fixture import make_splits
from tsfm_cli.ingest import IngestConfig, run_ingest
from tsfm_cli.train import TrainConfig, run_train
from tsfm_cli.ui import Reporter

torch.set_num_threads(1)

CSV = "timestamp,temp,flow\n" + "".join(
    f"2024-01-01T{h:02d}:{m:02d}:00Z,{20 + m % 7},{100 + h}\n" for h in range(4) for m in range(60)
)


@dataclass
class Recorder(Reporter):
    """A reporter that keeps its warnings."""

    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def flip_bit(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if offset is None else offset
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def clean(tmp_path) -> tuple[Path, Path]:
    src = write_files(tmp_path / "src", {"a.csv": CSV, "b.csv": CSV.replace("temp", "pressure")})
    out = tmp_path / "clean"
    summary = run_ingest([src], out, IngestConfig(), reporter=Recorder())
    assert summary["skipped"] is False
    return src, out


def test_bit_flipped_stage_output_is_named_and_rebuilt_not_skipped(clean):
    src, out = clean
    partition = dataset_files(out)[-1]  # one file of the series dataset
    name = partition.relative_to(out).as_posix()
    good = partition.read_bytes()
    flip_bit(partition)
    reporter = Recorder()
    summary = run_ingest([src], out, IngestConfig(), reporter=reporter)
    assert summary["skipped"] is False
    assert any(f"{name} (sha256 differs)" in w for w in reporter.warnings)
    assert partition.read_bytes() == good
    assert run_ingest([src], out, IngestConfig())["skipped"] is True


def test_bit_flipped_ood_split_output_is_rebuilt_identically(tmp_path):
    from tsfm_cli.ood import OodConfig, run_ood_split

    clean = make_ingest_dir(tmp_path / "clean")
    out = tmp_path / "splits"
    run_ood_split(clean, out, OodConfig())
    good = snapshot(out)
    flip_bit(out / "eval.parquet")
    reporter = Recorder()
    assert run_ood_split(clean, out, OodConfig(), reporter=reporter)["skipped"] is False
    assert any("eval.parquet (sha256 differs)" in w for w in reporter.warnings)
    rebuilt = snapshot(out)
    assert {k: v for k, v in rebuilt.items() if k != "manifest.json"} == {
        k: v for k, v in good.items() if k != "manifest.json"
    }


def test_damaged_parts_cache_is_named_discarded_and_rebuilt(clean):
    src, out = clean
    good = read_series(out)
    part = sorted((out / "parts").glob("*.rejects.parquet"))[0].name.split(".")[0]
    flip_bit(out / "parts" / f"{part}.parquet", offset=4)  # inside the first page: unreadable
    reporter = Recorder()
    summary = run_ingest([src], out, IngestConfig(), reporter=reporter)
    assert summary["files_parsed"] == 1 and summary["files_reused"] == 1
    assert any(f"parts/{part}.parquet: cached part" in w for w in reporter.warnings)
    assert read_series(out).equals(good)
    assert run_ingest([src], out, IngestConfig())["skipped"] is True  # healed, not failing forever


@pytest.mark.parametrize("damage", ["flip", "not_parquet"])
def test_damaged_upstream_file_exits_2_naming_it(tmp_path, damage):
    clean = make_ingest_dir(tmp_path / "clean")
    files = dataset_files(clean)
    series = files[len(files) // 2]  # one partition file among several
    assert len(files) > 2
    if damage == "flip":
        flip_bit(series)
    else:
        series.write_text("series_id,value\na,1\n")
    result = run_tsfm("ood-split", clean, "-o", tmp_path / "splits")
    assert result.returncode == 2, result.stderr
    assert str(series) in result.stderr
    assert ("not a parquet file" if damage == "not_parquet" else "changed or damaged") in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "splits").exists()


TINY = dict(
    archs=["encoder"],
    sizes=[{"d_model": 16, "layers": 1}],
    patch_size=16,
    steps=6,
    batch_size=8,
    warmup_steps=2,
    checkpoints=2,
    eval_windows=4,
    eval_samples=8,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("trained")
    splits = make_splits(root / "splits", n_series=2, train_length=400, windows=2)
    runs = root / "runs"
    run_train(splits, root / "results", TrainConfig(**TINY), runs_dir=runs)
    return splits, runs, pl.read_parquet(root / "results" / "results.parquet")


def _metrics(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select("run_id", "step", "scenario", "horizon", "nll", "crps", "mae").sort(
        "run_id", "step", "scenario", "horizon"
    )


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 not a checkpoint"])
def test_damaged_checkpoint_is_named_discarded_and_the_run_restarts(tmp_path, trained, content):
    splits, runs, first = trained
    mine = tmp_path / "runs"
    shutil.copytree(runs, mine)
    (run_dir,) = [p for p in mine.iterdir() if p.is_dir()]
    (run_dir / "done.json").unlink()  # as if killed: unfinished, with a damaged checkpoint
    (run_dir / "last.ckpt").write_bytes(content)
    reporter = Recorder()
    summary = run_train(splits, tmp_path / "results", TrainConfig(**TINY), runs_dir=mine,
                        reporter=reporter)  # fmt: skip
    assert summary["runs_trained"] == 1 and summary["runs_ok"] == 1
    assert any(str(run_dir / "last.ckpt") in w and "restarts" in w for w in reporter.warnings)
    again = pl.read_parquet(tmp_path / "results" / "results.parquet")
    assert _metrics(again).equals(_metrics(first))  # from scratch: the same numbers


def test_damaged_rows_of_a_finished_run_are_named_and_the_run_retrained(tmp_path, trained):
    splits, runs, first = trained
    mine = tmp_path / "runs"
    shutil.copytree(runs, mine)
    (run_dir,) = [p for p in mine.iterdir() if p.is_dir()]
    flip_bit(run_dir / "rows.parquet")
    reporter = Recorder()
    summary = run_train(splits, tmp_path / "results", TrainConfig(**TINY), runs_dir=mine,
                        reporter=reporter)  # fmt: skip
    assert summary["runs_trained"] == 1
    assert any("rows.parquet: changed since written" in w for w in reporter.warnings)
    assert _metrics(pl.read_parquet(tmp_path / "results" / "results.parquet")).equals(
        _metrics(first)
    )


@pytest.mark.parametrize("polars", [False, True])
def test_disk_full_is_one_line_exit_1_and_the_old_output_intact(tmp_path, monkeypatch, polars):
    from tsfm_cli.cli import app

    clean = make_ingest_dir(tmp_path / "clean")
    out = tmp_path / "splits"
    runner = CliRunner()
    first = runner.invoke(app, ["ood-split", str(clean), "-o", str(out), "--quiet"])
    assert first.exit_code == 0, first.output
    before = snapshot(out)

    def full(self, path, *args, **kwargs):
        if polars:  # what polars itself raises on a full disk (checked on /dev/full)
            raise pl.exceptions.ComputeError(
                "parquet: File out of specification: underlying IO error: "
                "No space left on device (os error 28)"
            )
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(pl.DataFrame, "write_parquet", full)
    result = runner.invoke(app, ["ood-split", str(clean), "-o", str(out), "--seed", "7", "--quiet"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "disk full" in lines[0] and "intact" in lines[0], result.output
    assert ".parquet" in lines[0]  # names the file
    assert "Traceback" not in result.output
    assert snapshot(out) == before
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "ood-split"


def test_disk_full_while_writing_a_checkpoint_is_one_line_exit_1(tmp_path, monkeypatch):
    """torch reports a full disk without an errno; the CLI still says disk full, naming the file."""
    import pytorch_lightning as lightning
    import yaml

    from tsfm_cli.cli import app

    splits = make_splits(tmp_path / "splits", n_series=2, train_length=400, windows=2)

    def full(self, path, *args, **kwargs):
        raise RuntimeError(
            "[enforce fail at inline_container.cc:783] . PytorchStreamWriter failed writing "
            "file data/0: file write failed"
        )

    monkeypatch.setattr(lightning.Trainer, "save_checkpoint", full)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"train": {**TINY, "schedule": "steps", "baselines": []}}))
    out = tmp_path / "results"
    args = ["train", str(splits), "-o", str(out), "-c", str(recipe), "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "disk full" in lines[0] and "last.ckpt.tmp" in lines[0], lines
    assert "internal error" not in result.output and not out.exists()
    assert not list((tmp_path / "results.runs").glob("*/last.ckpt.tmp"))


def test_inspect_names_a_damaged_file_without_reading_it(tmp_path):
    clean = make_ingest_dir(tmp_path / "clean")
    partition = dataset_files(clean)[0]
    flip_bit(partition, offset=4)
    result = run_tsfm("inspect", clean, "--json")
    assert result.returncode == 0, result.stderr
    entry = json.loads(result.stdout)["files"]["series/"]
    name = partition.relative_to(clean).as_posix()
    assert entry["problem"].startswith(f"{name}: changed since written (sha256 differs)")
