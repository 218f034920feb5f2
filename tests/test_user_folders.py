"""A stage replaces only an empty folder or its own output: any other folder is the user's.

Each stage is given, as its output, a folder holding a user's file; it must exit 2 naming the
folder and leave it byte-for-byte as it was. An output that is (or holds, or lies inside) an
input exits 2 saying so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import REPO_ROOT
from tests.ingest_helpers import write_files
from tests.ood_plant import make_ingest_dir
from tests.splits_fixture import make_splits

CSV = "timestamp,temp\n" + "".join(f"2024-01-01T00:{m:02d}:00Z,{20 + m % 7}\n" for m in range(60))


@dataclass
class Result:
    returncode: int
    stderr: str


def run_tsfm(*args, cwd: Path | None = None) -> Result:
    """The CLI in this process (no interpreter start per case: these checks come before work)."""
    from tsfm_cli.cli import app

    old = Path.cwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        result = CliRunner().invoke(app, [str(a) for a in args])
    finally:
        os.chdir(old)
    return Result(result.exit_code, " ".join(result.stderr.split()))


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (relative path → bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def user_folder(path: Path) -> Path:
    (path / "notes").mkdir(parents=True)
    (path / "thesis.docx").write_bytes(b"years of work\x00\x01")
    (path / "notes" / "todo.txt").write_text("call mum\n")
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    src = write_files(root / "src", {"plant.csv": CSV})
    clean = make_ingest_dir(root / "clean")
    splits = make_splits(root / "splits", n_series=2, train_length=300, windows=2)
    results = root / "results.csv"
    results.write_text("run_id,params,crps\na,100,1.0\nb,1000,0.5\n")
    return {
        "ingest": src,
        "ood-split": clean,
        "train": splits,
        "embed-bench": splits,
        "fit": results,
    }


STAGES = ["ingest", "ood-split", "train", "embed-bench", "fit"]


@pytest.mark.parametrize("stage", STAGES)
def test_stage_refuses_a_users_folder_and_leaves_it_untouched(tmp_path, inputs, stage):
    mine = user_folder(tmp_path / "Documents")
    before = snapshot(mine)
    result = run_tsfm(stage, inputs[stage], "-o", mine)
    assert result.returncode == 2, result.stderr
    assert str(mine) in result.stderr and "left untouched" in result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(mine) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Documents"]  # no temporaries either


@pytest.mark.parametrize("stage", STAGES)
def test_stage_refuses_a_file_as_output(tmp_path, inputs, stage):
    target = tmp_path / "report.pdf"
    target.write_bytes(b"%PDF-1.4 the user's")
    result = run_tsfm(stage, inputs[stage], "-o", target)
    assert result.returncode == 2, result.stderr
    assert str(target) in result.stderr and "not a directory" in result.stderr
    assert target.read_bytes() == b"%PDF-1.4 the user's"


def test_another_stages_output_is_not_replaced(tmp_path, inputs):
    """A folder holding ood-split's output is not train's to replace."""
    other = make_splits(tmp_path / "other_splits", n_series=2, train_length=300, windows=2)
    before = snapshot(other)
    result = run_tsfm("train", inputs["train"], "-o", other)
    assert result.returncode == 2
    assert "a tsfm 'ood-split' output" in result.stderr
    assert snapshot(other) == before


def test_empty_folder_is_used(tmp_path, inputs):
    out = tmp_path / "clean"
    out.mkdir()
    result = run_tsfm("ingest", inputs["ingest"], "-o", out, "--quiet")
    assert result.returncode == 0, result.stderr
    assert (out / "manifest.json").is_file()


@pytest.mark.parametrize(
    "stage, output, message",
    [
        ("ingest", lambda i: i["ingest"], "is the input"),
        ("ood-split", lambda i: i["ood-split"], "is the input"),
        ("train", lambda i: i["train"], "is the input"),
        ("embed-bench", lambda i: i["embed-bench"], "is the input"),
        ("ood-split", lambda i: i["ood-split"] / "splits", "lies inside the input"),
        ("train", lambda i: i["train"] / "results", "lies inside the input"),
        ("fit", lambda i: i["fit"].parent, "holds the input"),
    ],
)
def test_output_that_is_or_holds_or_lies_inside_an_input_is_refused(inputs, stage, output, message):
    source = inputs[stage]
    folder = source if source.is_dir() else source.parent
    before = snapshot(folder)
    result = run_tsfm(stage, source, "-o", output(inputs))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert snapshot(folder) == before


def test_run_refuses_a_users_folder_in_the_workdir_before_any_stage(tmp_path):
    work = tmp_path / "work"
    mine = user_folder(work / "train")
    before = snapshot(mine)
    recipe = REPO_ROOT / "tests" / "data" / "mini_chain.yaml"
    result = run_tsfm("run", recipe, "-w", work, cwd=REPO_ROOT)
    assert result.returncode == 2, result.stderr
    assert str(mine) in result.stderr and "left untouched" in result.stderr
    assert snapshot(mine) == before
    assert sorted(p.name for p in work.iterdir()) == ["train"]  # ingest never started
