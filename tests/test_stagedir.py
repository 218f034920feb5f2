import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import tsfm_env
from tsfm_cli import stagedir
from tsfm_cli.errors import BadInputError, LockedError
from tsfm_cli.stagedir import StageWriter, fingerprint, fresh_manifest, open_stage


def _write(out: Path, rows: int, config=None) -> dict:
    frame = pl.DataFrame({"x": list(range(rows))})
    with StageWriter(out, "ingest", config=config or {"a": 1}, inputs=[], command=["t"]) as w:
        w.write_parquet("table.parquet", frame)
        return w.commit(summary={"rows": rows})


def test_manifest_has_contract_fields_and_counts(tmp_path):
    manifest = _write(tmp_path / "clean", 5)
    on_disk = json.loads((tmp_path / "clean" / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(manifest, default=str))
    for key in ("stage", "schema_version", "tsfm_version", "created_utc", "command", "config"):
        assert key in on_disk
    assert on_disk["outputs"]["table.parquet"]["rows"] == 5
    assert on_disk["outputs"]["table.parquet"]["sha256"] == stagedir.sha256_file(
        tmp_path / "clean" / "table.parquet"
    )
    assert on_disk["summary"] == {"rows": 5}


def test_rewrite_replaces_whole_directory_and_leaves_no_temporaries(tmp_path):
    out = tmp_path / "clean"
    _write(out, 5)
    (out / "stale.txt").write_text("from an old run")
    _write(out, 7)
    assert pl.read_parquet(out / "table.parquet").height == 7
    assert not (out / "stale.txt").exists()
    leftovers = [
        p.name for p in tmp_path.iterdir() if p.name.startswith(".clean.") and "lock" not in p.name
    ]
    assert leftovers == []


def test_failure_inside_block_keeps_old_directory(tmp_path):
    out = tmp_path / "clean"
    _write(out, 3)
    with pytest.raises(RuntimeError), StageWriter(out, "ingest", config={}, inputs=[]) as w:
        w.write_parquet("table.parquet", pl.DataFrame({"x": [1]}))
        raise RuntimeError("boom")
    assert pl.read_parquet(out / "table.parquet").height == 3


def _python(code: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], env=tsfm_env(), **kwargs)


class LockHolder:
    """Another process holding the lock on `out` until the `with` block ends."""

    def __init__(self, out: Path):
        code = (
            "import sys; from pathlib import Path; from tsfm_cli import stagedir\n"
            f"with stagedir.output_lock(Path({str(out)!r})):\n"
            "    print('locked', flush=True); sys.stdin.readline()\n"
        )
        self.proc = _python(code, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def __enter__(self):
        assert self.proc.stdout.readline().strip() == "locked"
        return self

    def __exit__(self, *exc):
        self.proc.communicate("go\n", timeout=10)


def test_second_writer_is_refused_while_first_holds_lock(tmp_path):
    out = tmp_path / "clean"
    with (
        LockHolder(out),
        pytest.raises(LockedError, match="another tsfm run"),
        StageWriter(out, "ingest", config={}, inputs=[]),
    ):
        pass
    _write(out, 1)  # free again once the holder is gone


def test_kill_9_mid_write_leaves_old_directory_and_next_run_recovers(tmp_path):
    out = tmp_path / "clean"
    _write(out, 4)
    code = (
        "import os, signal; import polars as pl; from tsfm_cli.stagedir import StageWriter\n"
        f"with StageWriter({str(out)!r}, 'ingest', config={{}}, inputs=[]) as w:\n"
        "    w.write_parquet('table.parquet', pl.DataFrame({'x': [1, 2]}))\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = _python(code)
    assert proc.wait(60) == -signal.SIGKILL
    assert pl.read_parquet(out / "table.parquet").height == 4
    assert any(p.name.startswith(".clean.tmp-") for p in tmp_path.iterdir())
    _write(out, 6)
    assert not any(p.name.startswith(".clean.tmp-") for p in tmp_path.iterdir())


def test_recover_restores_directory_moved_aside_by_interrupted_swap(tmp_path):
    out = tmp_path / "clean"
    _write(out, 2)
    os.rename(out, tmp_path / ".clean.old")
    stagedir.recover(out)
    assert pl.read_parquet(out / "table.parquet").height == 2


def test_open_stage_checks_stage_and_version(tmp_path):
    out = tmp_path / "clean"
    _write(out, 2)
    assert open_stage(out, "ingest").manifest["summary"] == {"rows": 2}
    with pytest.raises(BadInputError, match="is a 'ingest' directory"):
        open_stage(out, "ood-split")
    with pytest.raises(BadInputError, match="no such directory"):
        open_stage(tmp_path / "nope", "ingest")
    with pytest.raises(BadInputError, match="no manifest.json"):
        open_stage(tmp_path, "ingest")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["schema_version"] = 99
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BadInputError, match="upgrade tsfm"):
        open_stage(out, "ingest")


def test_fresh_manifest_detects_same_inputs_and_config(tmp_path):
    out = tmp_path / "clean"
    _write(out, 2, config={"a": 1})
    assert fresh_manifest(out, "ingest", fingerprint({"a": 1}, [])) is not None
    assert fresh_manifest(out, "ingest", fingerprint({"a": 2}, [])) is None
    (out / "table.parquet").write_bytes(b"truncated")
    assert fresh_manifest(out, "ingest", fingerprint({"a": 1}, [])) is None


def test_lock_wait_gives_up_after_timeout(tmp_path):
    out = tmp_path / "clean"
    with LockHolder(out):
        started = time.monotonic()
        with pytest.raises(LockedError), stagedir.output_lock(out, wait_s=0.5):
            pass
        assert time.monotonic() - started >= 0.5


def test_a_dataset_folder_is_verified_file_by_file_and_described_by_one_hash(tmp_path):
    out = tmp_path / "clean"
    with StageWriter(out, "ingest", config={}, inputs=[], command=["t"]) as w:
        for name in ("data/k=1/part-0.parquet", "data/k=2/part-0.parquet"):
            w.write_parquet(name, pl.DataFrame({"x": [len(name)]}))
        w.write_parquet("other.parquet", pl.DataFrame({"x": [0]}))
        w.commit()
    upstream = open_stage(out, "ingest")
    assert [p.relative_to(out).as_posix() for p in upstream.dataset("data")] == [
        "data/k=1/part-0.parquet",
        "data/k=2/part-0.parquet",
    ]
    described = upstream.describe("data/", "other.parquet")
    assert set(described["content"]) == {"data/", "other.parquet"}
    before = described["content"]["data/"]
    (out / "data/k=2/part-0.parquet").write_bytes(b"PAR1 not what was written PAR1")
    again = open_stage(out, "ingest")
    with pytest.raises(BadInputError, match="changed or damaged") as info:
        again.describe("data/")
    assert "data/k=2/part-0.parquet" in str(info.value)
    assert len(before) == 64
