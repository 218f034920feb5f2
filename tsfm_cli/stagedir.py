"""Stage directories: the contract every stage keeps (DESIGN §1).

A stage writes one directory holding ``manifest.json`` plus parquet files and plots. This module
is the only place that knows how such a directory is written and read:

- ``StageWriter`` builds the new directory in a temporary sibling and swaps it in atomically, so a
  crash or ``kill -9`` at any moment leaves the old complete directory or the new complete one;
- a lock file (``flock``, released by the kernel when the process dies) stops two runs writing the
  same directory;
- ``open_stage`` checks that an input directory is the stage the caller expects;
- ``fingerprint``/``fresh_manifest`` let a rerun with the same inputs and config do nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tsfm_cli import __version__
from tsfm_cli.errors import BadInputError, LockedError

MANIFEST = "manifest.json"

# Bump a stage's number when its artifacts change incompatibly; readers refuse newer versions.
SCHEMA_VERSIONS: dict[str, int] = {
    "ingest": 2,  # 2: `series/` is a partitioned dataset (1: one series.parquet)
    "ood-split": 1,
    "train": 1,
    "embed-bench": 1,
    "fit": 1,
}

# Where `-o` points when it is not given: a sibling of the input named after the stage's output.
DEFAULT_OUTPUT_NAMES: dict[str, str] = {
    "ingest": "clean",
    "ood-split": "splits",
    "train": "results",
    "embed-bench": "bench",
    "fit": "laws",
}

_HASH_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


# Recorded in a manifest's `inputs` for people, never hashed into an identity: the same data in
# another folder (or rebuilt at another time) is the same input.
NOT_IDENTITY = ("path", "manifest_sha256", "created_utc", "command")


def content_identity(value: Any) -> Any:
    """`value` without the keys that name where or when (paths, times, argv): content only."""
    if isinstance(value, dict):
        return {k: content_identity(v) for k, v in value.items() if k not in NOT_IDENTITY}
    if isinstance(value, (list, tuple)):
        return [content_identity(v) for v in value]
    return value


def fingerprint(config: Any, inputs: Any) -> str:
    """Hash of what determines a stage's output: resolved settings and input *content* (sha256s),
    never paths or times. Equal fingerprints mean nothing to redo."""
    identity = {"config": config, "inputs": content_identity(inputs)}
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()


def default_output(first_input: Path, stage: str) -> Path:
    """`clean/` next to the sources, `splits/` next to `clean/`, and so on."""
    first_input = Path(first_input)
    parent = first_input.parent if first_input.name else first_input
    return parent / DEFAULT_OUTPUT_NAMES[stage]


# --------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class StageInput:
    """An upstream stage directory that has been checked."""

    path: Path
    manifest: dict[str, Any]
    manifest_sha256: str
    _sha256: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def stage(self) -> str:
        return self.manifest["stage"]

    def file(self, name: str) -> Path:
        """`name` in this directory, its bytes checked against the manifest (BadInputError)."""
        self.sha256(name)
        return self.path / name

    def sha256(self, name: str) -> str:
        """The content hash of `name`, verified once against the manifest's `outputs`."""
        if name in self._sha256:
            return self._sha256[name]
        path = self.path / name
        if not path.is_file():
            raise BadInputError(f"{self.path}: {name} is missing although manifest.json lists it")
        recorded = self.manifest.get("outputs", {}).get(name, {}).get("sha256")
        if name.endswith(".parquet") and not _looks_like_parquet(path):
            raise BadInputError(
                f"{path}: not a parquet file; rerun `tsfm {self.stage}` to rebuild it"
            )
        actual = sha256_file(path)
        if recorded is not None and actual != recorded:
            raise BadInputError(
                f"{path}: changed or damaged since `tsfm {self.stage}` wrote it (sha256 "
                f"{actual[:12]}…, manifest.json says {recorded[:12]}…); rerun `tsfm {self.stage}`"
            )
        self._sha256[name] = actual
        return actual

    def dataset(self, name: str) -> list[Path]:
        """The files of the dataset folder `name` (every output listed under `name/`), each
        verified like `file`, in the manifest's order; [] when it lists none."""
        return [self.file(n) for n in self.dataset_names(name)]

    def dataset_names(self, name: str) -> list[str]:
        prefix = name.rstrip("/") + "/"
        return [n for n in self.manifest.get("outputs", {}) if n.startswith(prefix)]

    def dataset_sha256(self, name: str) -> str:
        """One content hash for all files of dataset `name`: of their names and verified
        sha256s (a downstream manifest records this, not thousands of file hashes)."""
        listing = {n: self.sha256(n) for n in self.dataset_names(name)}
        return hashlib.sha256(canonical_json(listing).encode()).hexdigest()

    def describe(self, *names: str) -> dict[str, Any]:
        """How this input is recorded in a downstream manifest's `inputs`: where it is, and the
        verified content hash of each file the downstream stage reads (`names`; default every
        output). A name ending in `/` is a dataset folder: one hash for all its files (see
        `dataset_sha256`). Only `content` is identity (see `content_identity`)."""
        listed = list(self.manifest.get("outputs", {}))
        wanted = names or tuple(listed)
        content = {}
        for name in wanted:
            if name.endswith("/"):
                content[name] = self.dataset_sha256(name)
            elif name in listed or (self.path / name).is_file():
                content[name] = self.sha256(name)
        return {
            "path": str(self.path),
            "stage": self.stage,
            "manifest_sha256": self.manifest_sha256,
            "content": content,
        }


def _looks_like_parquet(path: Path) -> bool:
    """Parquet files start and end with the magic bytes PAR1."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
            handle.seek(-4, os.SEEK_END)
            return head == b"PAR1" and handle.read(4) == b"PAR1"
    except OSError:
        return False


def _load_manifest(path: Path) -> tuple[dict[str, Any], bytes]:
    """The parsed manifest and its bytes (whose hash a downstream manifest records)."""
    try:
        raw = path.read_bytes()
        return json.loads(raw), raw
    except (OSError, ValueError) as exc:
        raise BadInputError(f"{path}: unreadable manifest ({exc})") from exc


def read_manifest(directory: Path) -> dict[str, Any] | None:
    path = Path(directory) / MANIFEST
    return _load_manifest(path)[0] if path.is_file() else None


def open_stage(directory: Path | str, expected: str | tuple[str, ...]) -> StageInput:
    """Open an upstream stage directory, checking its `stage` and `schema_version`."""
    directory = Path(directory)
    expected_stages = (expected,) if isinstance(expected, str) else expected
    wanted = " or ".join(f"'{s}'" for s in expected_stages)
    if not directory.exists():
        raise BadInputError(f"{directory}: no such directory (expected the output of {wanted})")
    if not directory.is_dir():
        raise BadInputError(f"{directory}: not a directory (expected the output of {wanted})")
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise BadInputError(
            f"{directory}: not a tsfm stage directory (no {MANIFEST}); "
            f"expected the output of {wanted}"
        )
    manifest, raw = _load_manifest(manifest_path)
    stage = manifest.get("stage")
    if stage not in expected_stages:
        raise BadInputError(
            f"{directory}: is a '{stage}' directory, but this command reads the output of {wanted}"
        )
    version = manifest.get("schema_version")
    supported = SCHEMA_VERSIONS[stage]
    if not isinstance(version, int) or version > supported:
        raise BadInputError(
            f"{manifest_path}: schema_version {version!r} of stage '{stage}' is newer than this "
            f"tsfm {__version__} reads (up to {supported}); upgrade tsfm"
        )
    return StageInput(directory, manifest, hashlib.sha256(raw).hexdigest())


def describe_file(path: Path) -> dict[str, Any]:
    """How a raw input file is recorded in a manifest's `inputs`."""
    path = Path(path)
    return {"path": str(path), "sha256": sha256_file(path), "bytes": path.stat().st_size}


def damaged_outputs(out_dir: Path, manifest: dict[str, Any]) -> list[str]:
    """The files of `manifest["outputs"]` whose bytes are not what was written: missing, another
    size, or another sha256 (always hashed in full: a flipped bit keeps size and may keep mtime)."""
    damaged = []
    for name, meta in manifest.get("outputs", {}).items():
        path = Path(out_dir) / name
        if not path.is_file():
            damaged.append(f"{path} (missing)")
        elif path.stat().st_size != meta.get("bytes"):
            damaged.append(f"{path} (size changed)")
        elif meta.get("sha256") is not None and sha256_file(path) != meta["sha256"]:
            damaged.append(f"{path} (sha256 differs)")
    return damaged


def fresh_manifest(out_dir: Path, stage: str, fp: str, warn: Any = None) -> dict[str, Any] | None:
    """The existing manifest if `out_dir` already holds this stage's intact output for
    fingerprint `fp`; None when anything must be rebuilt (`warn` is told which files)."""
    manifest = read_manifest(out_dir)
    if not manifest or manifest.get("stage") != stage or manifest.get("fingerprint") != fp:
        return None
    if manifest.get("schema_version") != SCHEMA_VERSIONS[stage]:
        return None
    damaged = damaged_outputs(out_dir, manifest)
    if damaged:
        if warn is not None:
            warn(f"{stage}: {', '.join(damaged)}: changed since written; rebuilding the output")
        return None
    return manifest


def reuse_summary(
    out_dir: Path, stage: str, fp: str, reporter: Any = None
) -> dict[str, Any] | None:
    """The summary a stage returns when `out_dir` is already fresh: nothing is redone."""
    manifest = fresh_manifest(out_dir, stage, fp, reporter.warn if reporter else None)
    if manifest is None:
        return None
    return {**manifest.get("summary", {}), "out_dir": str(out_dir), "skipped": True}


# --------------------------------------------------------------------------------------------
# Writing


def _sibling(out_dir: Path, tag: str) -> Path:
    return out_dir.parent / f".{out_dir.name}.{tag}"


@contextlib.contextmanager
def output_lock(out_dir: Path, wait_s: float = 0.0) -> Iterator[None]:
    """Exclusive lock on `out_dir`; the kernel drops it when the holder dies (never stale)."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    lock_path = _sibling(out_dir, "lock")
    handle = open(lock_path, "a+")  # noqa: SIM115 - held across the yield
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "unknown"
                    raise LockedError(
                        f"{out_dir}: another tsfm run (pid {holder}) is writing this directory; "
                        "wait for it to finish (or pass --wait SECONDS)"
                    ) from None
                time.sleep(0.2)
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(b))


def recover(out_dir: Path) -> None:
    """Finish or undo a swap that a crash interrupted, and remove stale temporary siblings.

    Only call while holding the lock: then no other process is using those siblings.
    """
    out_dir = Path(out_dir)
    old = _sibling(out_dir, "old")
    if old.exists():
        if not out_dir.exists() and (old / MANIFEST).is_file():
            os.rename(old, out_dir)
        else:
            shutil.rmtree(old, ignore_errors=True)
    for stale in out_dir.parent.glob(f".{out_dir.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@dataclass
class StageWriter:
    """Builds a stage directory in a temporary sibling and swaps it in on `commit`.

    Use as a context manager; leaving the block without `commit` discards the new directory and
    leaves the old one untouched::

        with StageWriter(out, "ingest", config=cfg, inputs=inputs) as writer:
            writer.write_parquet("report.parquet", frame)
            writer.commit(summary={"series": 12})
    """

    out_dir: Path
    stage: str
    config: dict[str, Any]
    inputs: list[dict[str, Any]] | dict[str, Any]
    command: list[str] | None = None
    wait_s: float = 0.0
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        if self.stage not in SCHEMA_VERSIONS:
            raise ValueError(f"unknown stage {self.stage!r}")
        check_output_dir(self.out_dir, self.stage)
        self._lock: contextlib.ExitStack | None = None
        self.tmp: Path | None = None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.config, self.inputs)

    @property
    def dir(self) -> Path:
        """The directory being built; write files here, then `register` them."""
        if self.tmp is None:
            raise RuntimeError("StageWriter used outside its `with` block")
        return self.tmp

    def __enter__(self) -> StageWriter:
        stack = contextlib.ExitStack()
        stack.enter_context(output_lock(self.out_dir, self.wait_s))
        self._lock = stack
        try:
            recover(self.out_dir)
            check_output_dir(self.out_dir, self.stage)  # again, now that no one else writes it
            self.tmp = _sibling(self.out_dir, f"tmp-{os.getpid()}")
            self.tmp.mkdir()
        except BaseException:
            stack.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self.tmp is not None and self.tmp.exists():
                shutil.rmtree(self.tmp, ignore_errors=True)
        finally:
            if self._lock is not None:
                self._lock.close()

    def previous_manifest(self) -> dict[str, Any] | None:
        """The manifest of the directory this write will replace (for incremental stages)."""
        return read_manifest(self.out_dir)

    def write_parquet(self, name: str, frame: Any, **options: Any) -> Path:
        """Write a polars DataFrame (zstd) and record its rows and hash."""
        path = self.dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            frame.write_parquet(path, compression="zstd", **options)
        except Exception as exc:
            # polars reports a full disk as a ComputeError without the file: name it
            if not isinstance(exc, OSError) and os.strerror(errno.ENOSPC) in str(exc):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from exc
            raise
        self.register(name, rows=frame.height)
        return path

    def register(self, name: str, rows: int | None = None) -> None:
        """Record a file already written under `dir` (a plot, a report, a parquet)."""
        path = self.dir / name
        if not path.is_file():
            raise RuntimeError(f"{name} was registered but not written")
        entry: dict[str, Any] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
        if rows is not None:
            entry["rows"] = int(rows)
        self.outputs[name] = entry

    def carry_over(self, name: str, from_dir: Path | None = None) -> Path:
        """Reuse an unchanged file of the previous directory, or of `from_dir` (e.g. a shard's
        directory), by hard link when possible."""
        source = (self.out_dir if from_dir is None else Path(from_dir)) / name
        target = self.dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)
        return target

    def commit(self, summary: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        """Write manifest.json last, then swap the new directory in atomically."""
        manifest = {
            "stage": self.stage,
            "schema_version": SCHEMA_VERSIONS[self.stage],
            "tsfm_version": __version__,
            "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": list(self.command if self.command is not None else sys.argv),
            "config": self.config,
            "inputs": self.inputs,
            "fingerprint": self.fingerprint,
            "outputs": dict(sorted(self.outputs.items())),
            "summary": summary or {},
            **extra,
        }
        manifest_path = self.dir / MANIFEST
        with open(manifest_path, "w") as handle:
            json.dump(manifest, handle, indent=2, default=str)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        _fsync_dir(self.dir)
        self._swap_in()
        return manifest

    def _swap_in(self) -> None:
        tmp = self.dir
        if not self.out_dir.exists():
            os.rename(tmp, self.out_dir)
        elif _exchange(tmp, self.out_dir):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            # Two renames; `recover` repairs the moment between them if we die there.
            old = _sibling(self.out_dir, "old")
            os.rename(self.out_dir, old)
            os.rename(tmp, self.out_dir)
            shutil.rmtree(old, ignore_errors=True)
        _fsync_dir(self.out_dir.parent)
        self.tmp = None


def require_new_output(out_dir: Path, inputs: list[Path]) -> None:
    """Refuse an output that is one of the inputs, holds one, or lies inside a stage folder
    given as input (a rerun of that stage would replace it together with this output)."""
    out_dir = Path(out_dir).resolve()
    for path in inputs:
        path = Path(path).resolve()
        if path == out_dir:
            raise BadInputError(f"{out_dir}: the output directory is the input; choose another -o")
        if out_dir in path.parents:
            raise BadInputError(
                f"{out_dir}: the output directory holds the input {path}; choose another -o"
            )
        if (path / MANIFEST).is_file() and path in out_dir.parents:
            raise BadInputError(
                f"{out_dir}: the output directory lies inside the input {path}; choose another -o"
            )


def check_output_dir(out_dir: Path, stage: str) -> None:
    """Refuse to replace anything but an empty folder or this stage's own output.

    A stage swaps its whole output folder, so any other existing folder (the user's) would be
    deleted: it exits 2 instead and is left as it is.
    """
    out_dir = Path(out_dir)
    if not out_dir.exists() and not out_dir.is_symlink():
        return
    if not out_dir.is_dir():
        raise BadInputError(
            f"{out_dir}: exists and is not a directory; tsfm writes its '{stage}' output "
            "only to a new or empty folder or to its own earlier output"
        )
    entries = sorted(p.name for p in out_dir.iterdir())
    if not entries:
        return
    manifest_path = out_dir / MANIFEST
    manifest = None
    if manifest_path.is_file():
        with contextlib.suppress(OSError, ValueError):
            manifest = json.loads(manifest_path.read_bytes())
    found = manifest.get("stage") if isinstance(manifest, dict) else None
    if found == stage:
        return
    what = f"a tsfm '{found}' output" if found else f"{len(entries)} entries, e.g. {entries[0]!r}"
    raise BadInputError(
        f"{out_dir}: folder exists and is not a tsfm '{stage}' output ({what}); "
        "tsfm replaces only an empty folder or its own earlier output, so it was left "
        "untouched; choose another -o"
    )


def claim_output(out_dir: Path, stage: str, inputs: list[Path] | tuple[Path, ...] = ()) -> None:
    """Every check on a stage's output folder before any work: not an input, not the user's."""
    require_new_output(out_dir, list(inputs))
    check_output_dir(out_dir, stage)


def parse_shard(text: str) -> tuple[int, int]:
    """`--shard i/n` → (i, n), 0 ≤ i < n (ValueError otherwise): one syntax for every stage."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not match or int(match[2]) < 1 or int(match[1]) >= int(match[2]):
        raise ValueError(f"bad shard '{text}': expected i/n with 0 <= i < n (e.g. 0/4)")
    return int(match[1]), int(match[2])


def shard_dir(out_dir: Path, index: int, count: int) -> Path:
    """Where shard `index` of `count` writes: `OUT-shard-i-of-n` next to OUT (OUT for 0/1)."""
    out_dir = Path(out_dir)
    return out_dir if count == 1 else out_dir.parent / f"{out_dir.name}-shard-{index}-of-{count}"
