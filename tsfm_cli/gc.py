"""`tsfm gc`: remove run folders that no current train or embed-bench output uses.

Every sweep keeps its runs in a runs directory (``results.runs/`` beside ``results/``). When
settings or data change, new runs get new ids and the old run folders stay behind. ``collect``
finds, for every train/embed-bench output in a workdir, the run ids its manifest lists
(``summary.run_ids``) and removes the other run folders of that runs directory.

What is never removed: anything that is not a tsfm run folder (its ``spec.json`` must name the
folder's own run id), a run another process is training (its lock is held), an unfinished run
(no ``done.json``: a rerun resumes it) unless asked, and every runs directory that an output
without ``run_ids`` points to (its runs cannot be told apart). The data stores beside a runs
directory (``train-store-*``, ``eval-store-*``: train/store.py, train/eval_store.py) are not
runs and are never looked at: a store is rebuilt from its input whenever it is missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tsfm_cli.errors import BadInputError, LockedError
from tsfm_cli.stagedir import MANIFEST, output_lock, read_manifest

SWEEP_STAGES = ("train", "embed-bench")


@dataclass
class RunsDir:
    path: Path
    users: list[Path] = field(default_factory=list)  # the outputs whose runs live here
    keep: set[str] = field(default_factory=set)
    unknown: list[Path] = field(default_factory=list)  # outputs that do not list their runs


def _outputs(target: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The train/embed-bench outputs to consider: TARGET itself (and its siblings, which may
    share its runs directory) when it is one, else the ones directly inside TARGET."""
    scope = target.parent if (target / MANIFEST).is_file() else target
    found = []
    for folder in sorted(p for p in scope.iterdir() if p.is_dir()):
        manifest = read_manifest(folder) if (folder / MANIFEST).is_file() else None
        if manifest and manifest.get("stage") in SWEEP_STAGES:
            found.append((folder, manifest))
    return found


def _runs_dir(out: Path, manifest: dict[str, Any]) -> Path | None:
    """Where an output's runs are: as recorded, else by name beside the output."""
    recorded = manifest.get("summary", {}).get("runs_dir")
    if recorded:
        path = Path(recorded)
        if path.is_absolute() and path.is_dir():
            return path
        beside = out.parent / path.name
        if beside.is_dir():
            return beside
    default = out.parent / f"{out.name}.runs"
    return default if default.is_dir() else None


def is_run_folder(path: Path) -> bool:
    """True only for a folder tsfm made for a run: its spec.json names this folder's run id."""
    try:
        spec = json.loads((path / "spec.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(spec, dict) and spec.get("run_id") == path.name


def _size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def collect(
    target: Path | str, *, dry_run: bool = False, unfinished: bool = False
) -> dict[str, Any]:
    """Remove (or with `dry_run`, list) the run folders no current output uses."""
    target = Path(target)
    if not target.is_dir():
        raise BadInputError(f"{target}: no such directory (give a workdir or a train output)")
    runs_dirs: dict[Path, RunsDir] = {}
    for out, manifest in _outputs(target):
        path = _runs_dir(out, manifest)
        if path is None:
            continue
        entry = runs_dirs.setdefault(path.resolve(), RunsDir(path))
        entry.users.append(out)
        ids = manifest.get("summary", {}).get("run_ids")
        if isinstance(ids, list):
            entry.keep.update(map(str, ids))
        else:
            entry.unknown.append(out)
    if not runs_dirs:
        raise BadInputError(
            f"{target}: no train or embed-bench output with a runs directory here; nothing to do"
        )
    removed: list[dict[str, Any]] = []
    kept: list[dict[str, str]] = []
    for entry in runs_dirs.values():
        if entry.unknown:
            kept.append(
                {
                    "path": str(entry.path),
                    "why": f"{entry.unknown[0]} does not list its runs (older tsfm); rerun it",
                }
            )
            continue
        for run in sorted(p for p in entry.path.iterdir() if p.is_dir()):
            if run.name in entry.keep:
                continue
            if not is_run_folder(run):
                kept.append({"path": str(run), "why": "not a tsfm run folder"})
                continue
            if not unfinished and not (run / "done.json").is_file():
                kept.append({"path": str(run), "why": "unfinished (a rerun resumes it)"})
                continue
            size = _size(run)
            if not dry_run:
                try:
                    with output_lock(run):
                        shutil.rmtree(run)
                except LockedError:
                    kept.append({"path": str(run), "why": "in use by another tsfm run"})
                    continue
                (run.parent / f".{run.name}.lock").unlink(missing_ok=True)
            removed.append({"run_id": run.name, "path": str(run), "bytes": size})
    return {
        "target": str(target),
        "dry_run": dry_run,
        "runs_dirs": [str(e.path) for e in runs_dirs.values()],
        "runs_in_use": sum(len(e.keep) for e in runs_dirs.values()),
        "removed": removed,
        "bytes_freed": sum(r["bytes"] for r in removed),
        "not_removed": kept,
    }
