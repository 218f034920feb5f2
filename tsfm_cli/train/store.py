"""The training series as one flat store: float32 values (NaN where unobserved), bool observed
and a per-series index, built from train.parquet a slice of rows at a time.

On disk (``train-store-<sha256[:16]>/`` beside the runs directory, shared by every run and shard of
a sweep) the arrays are ``.npy`` files opened with ``mmap_mode="r"``: a sweep's memory holds the
windows of a batch, not the corpus, so a corpus larger than RAM trains. The store is keyed by
train.parquet's sha256 (recorded with each file's sha256 in ``store.json``, written last and
checked on every open), built once and reused; a damaged store is rebuilt. Without a directory
the same arrays are built in memory. ``keyed_folder`` is that build-verify-rebuild logic on its
own: the eval store (train/eval_store.py) uses it too.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tsfm_cli.errors import BadInputError
from tsfm_cli.stagedir import sha256_file

SLICE_ROWS = 4_000_000
FILES = ("values.npy", "observed.npy", "index.parquet")
FORMAT = 1


def _index(path: Path) -> pl.DataFrame:
    """One row per series in file order: first row, length, first timestamp (s), freq_s;
    checks each series' rows are contiguous (ood-split writes them so)."""
    scan = pl.scan_parquet(path)
    total = scan.select(pl.len()).collect().item()
    parts = [
        scan.slice(offset, SLICE_ROWS)
        .with_row_index("row", offset=offset)
        .group_by("series_id", maintain_order=True)
        .agg(
            pl.col("row").min().alias("first"),
            pl.col("row").max().alias("last"),
            pl.len().alias("length"),
            pl.col("timestamp").min().alias("t0"),
            pl.col("freq_s").first(),
        )
        .collect()
        for offset in range(0, total, SLICE_ROWS)
    ]
    if not parts:
        raise BadInputError(f"{path}: no training rows")
    index = (
        pl.concat(parts)
        .group_by("series_id", maintain_order=True)
        .agg(
            pl.col("first").min(),
            pl.col("last").max(),
            pl.col("length").sum(),
            pl.col("t0").min(),
            pl.col("freq_s").first(),
        )
        .sort("series_id")
    )
    if (index["last"] - index["first"] + 1 != index["length"]).any():
        raise BadInputError(f"{path}: rows of a series are not together (not an ood-split output)")
    lengths = index["length"].to_numpy().astype(np.int64)
    return index.with_columns(
        offset=pl.Series(np.cumsum(lengths) - lengths),
        start_s=pl.col("t0").dt.epoch("s"),
    ).select("series_id", "first", "length", "offset", "start_s", "freq_s")


def _fill(path: Path, index: pl.DataFrame, values: np.ndarray, observed: np.ndarray) -> None:
    """Copy train.parquet's rows, a slice at a time, to their place in the series-sorted arrays."""
    scan = pl.scan_parquet(path)
    first = index["first"].to_numpy()
    offset = index["offset"].to_numpy()
    order = np.argsort(first)  # series in file order
    for start in range(0, len(values), SLICE_ROWS):
        part = (
            scan.slice(start, SLICE_ROWS)
            .select(
                pl.col("timestamp").dt.epoch("us").alias("ts"),
                pl.when(pl.col("observed")).then(pl.col("value")).cast(pl.Float32),
                pl.col("observed").fill_null(False),
            )
            .collect()
        )
        rows = np.arange(start, start + part.height)
        # the series each row belongs to, and where that series' rows go
        owner = order[np.searchsorted(first[order], rows, side="right") - 1]
        dest = offset[owner] + (rows - first[owner])
        v = part["value"].fill_null(np.nan).to_numpy().astype(np.float32)
        ts = part["ts"].to_numpy()
        same = owner[1:] == owner[:-1]
        if (same & (np.diff(ts) <= 0)).any():
            raise BadInputError(f"{path}: rows of a series are not in time order")
        values[dest] = v
        observed[dest] = part["observed"].to_numpy() & np.isfinite(v)


def build_arrays(path: Path, folder: Path | None = None):
    """(index, values, observed): in memory, or as .npy files written into `folder`."""
    index = _index(path)
    total = int(index["length"].sum())
    if folder is None:
        values, observed = np.empty(total, np.float32), np.empty(total, bool)
    else:
        values = np.lib.format.open_memmap(folder / "values.npy", "w+", np.float32, (total,))
        observed = np.lib.format.open_memmap(folder / "observed.npy", "w+", bool, (total,))
    _fill(path, index, values, observed)
    if folder is not None:
        values.flush()
        observed.flush()
        index.write_parquet(folder / "index.parquet")
    return index, values, observed


def _valid(folder: Path, identity: dict[str, Any], files: tuple[str, ...]) -> bool:
    try:
        record = json.loads((folder / "store.json").read_text())
    except (OSError, ValueError):
        return False
    if any(record.get(key) != value for key, value in identity.items()):
        return False
    return all(sha256_file(folder / name) == record["files"].get(name) for name in files)


def keyed_folder(
    root: Path,
    name: str,
    identity: dict[str, Any],
    files: tuple[str, ...],
    build: Callable[[Path], object],
) -> Path:
    """``root/name`` holding ``files`` for ``identity`` (what the bytes were built from, recorded
    in ``store.json`` with each file's sha256, written last): verified on every open; built by
    ``build(folder)`` in a private sibling and renamed into place when absent or damaged. The
    one implementation behind the train store and the eval store (train/eval_store.py)."""
    folder = Path(root) / name
    if not _valid(folder, identity, files):
        Path(root).mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
        try:
            build(tmp)
            record = {**identity, "files": {f: sha256_file(tmp / f) for f in files}}
            (tmp / "store.json").write_text(json.dumps(record, indent=2))
            shutil.rmtree(folder, ignore_errors=True)
            try:
                tmp.rename(folder)
            except OSError:  # another shard built it meanwhile: theirs is as good
                if not _valid(folder, identity, files):
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def open_store(path: Path, train_sha256: str, root: Path | None):
    """(index, values, observed) of train.parquet at `path`: memory-mapped from the store in
    `root` (built there first if absent or damaged), or built in memory when `root` is None."""
    if root is None:
        return build_arrays(path)
    folder = keyed_folder(
        root,
        f"train-store-{train_sha256[:16]}",
        {"format": FORMAT, "train_sha256": train_sha256},
        FILES,
        lambda tmp: build_arrays(path, tmp),
    )
    index = pl.read_parquet(folder / "index.parquet")
    values = np.load(folder / "values.npy", mmap_mode="r")
    observed = np.load(folder / "observed.npy", mmap_mode="r")
    return index, values, observed
