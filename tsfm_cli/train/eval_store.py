"""The selected evaluation windows as one store: what the models and the baselines score,
written once from eval.parquet (``BATCH_ROWS`` rows of a row group at a time) and read back a
batch at a time.

Selection (``choose``): eval.parquet's small columns are read (never its lists), the windows
chosen by ``select_windows`` (at most ``eval_windows`` per scenario × horizon, the data seed),
and ordered split × scenario × horizon group by group, so that each group is one run of rows.

On disk (``eval-store-<key[:16]>/`` beside the train store; key = sha256 of eval.parquet's sha256
and the selection settings) the windows' arrays are ``.npy`` files (tsfm_cli/windows.py:
context and target in eval.parquet's dtype, NaN where null, their masks as bool) mapped only
while a batch is written or read, and ``windows.parquet`` holds each window's small columns
in row order (plus ``target_length``: its target's length, the group's target width). Verified
on every open and rebuilt when damaged by the train store's code (``store.keyed_folder``).
Without a directory the same arrays are built in memory.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from tsfm_cli.errors import BadInputError
from tsfm_cli.schema import SPLITS
from tsfm_cli.train.store import keyed_folder
from tsfm_cli.windows import (
    ARRAY_FILES,
    LIST_COLUMNS,
    RaggedRow,
    WindowArrays,
    runs,
    value_dtype,
)

FORMAT = 1
GROUP = ["split", "scenario", "horizon"]
META = "windows.parquet"
FILES = (*ARRAY_FILES, META)
BATCH_ROWS = 512  # eval.parquet rows decoded at once while building


def no_split_note(path: Path) -> str:
    return (
        f"{path}: no 'split' column (an ood-split from before the validation split): "
        "every window counts as test, and nothing can be selected on validation data"
    )


def choose(path: Path, max_windows: int, seed: int) -> pl.DataFrame:
    """The selected windows' small columns (``__row``: their row in eval.parquet), in store
    order: groups in the order they first appear among the selected windows, each group's
    windows in ``select_windows``' order."""
    from tsfm_cli.train.data import select_windows

    scan = pl.scan_parquet(path)
    columns = scan.collect_schema().names()
    missing = {"scenario", "horizon", *LIST_COLUMNS} - set(columns)
    if missing:
        raise BadInputError(f"{path}: missing columns {', '.join(sorted(missing))}")
    frame = (
        scan.select([c for c in columns if c not in LIST_COLUMNS])
        .with_row_index("__row")
        .collect(engine="streaming")
    )
    if "split" not in frame.columns:
        frame = frame.with_columns(split=pl.lit("test"))
    bad = frame.filter(~pl.col("split").is_in(SPLITS))["split"].unique().to_list()
    if bad:
        raise BadInputError(f"{path}: column split must be val or test, found {bad[:3]}")
    chosen = select_windows(frame, max_windows, seed).with_row_index("_pos")
    first = pl.col("_pos").min().over(GROUP)
    return chosen.sort(first, "_pos").drop("_pos")


def fill(
    path: Path, meta: pl.DataFrame, folder: Path | None = None
) -> tuple[pl.DataFrame, WindowArrays]:
    """(`meta` with ``target_length``, the arrays): the list columns of `meta`'s windows
    (``__row``) read from eval.parquet one batch of a row group at a time (row groups without a
    selected window are not read) into arrays in memory or in `folder`; checks every window has
    one context length and each group's windows one target length."""
    file = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
    schema = pl.scan_parquet(path).collect_schema()
    wanted = meta["__row"].to_numpy()
    order = np.argsort(wanted)
    rows = wanted[order]  # the selected rows of eval.parquet, ascending
    arrays: WindowArrays | None = None
    lengths = np.zeros(meta.height, np.int64)
    start = 0
    for group in range(file.metadata.num_row_groups):
        count = file.metadata.row_group(group).num_rows
        lo, hi = np.searchsorted(rows, [start, start + count])
        if lo < hi:
            for batch in file.iter_batches(BATCH_ROWS, row_groups=[group], columns=LIST_COLUMNS):
                part = pl.from_arrow(batch)
                at = np.searchsorted(rows, [start, start + part.height])
                local = rows[at[0] : at[1]] - start
                if len(local) and arrays is None:  # sized by the first selected window
                    width = int(part["context"].list.len()[int(local[0])])
                    arrays = WindowArrays.allocate(
                        meta,
                        (width, int(meta["horizon"].max())),
                        (value_dtype(schema["context"]), value_dtype(schema["target"])),
                        folder,
                    )
                if len(local):
                    dest = order[at[0] : at[1]]
                    try:
                        lengths[dest] = arrays.put(part[local], dest)
                    except RaggedRow as exc:
                        row = start + int(local[exc.row])
                        raise BadInputError(f"{path}: row {row}: {exc}") from None
                start += part.height
        else:
            start += count
    if arrays is None:
        raise BadInputError(f"{path}: no evaluation windows")
    for key, lo, hi in runs(meta, GROUP):
        if lengths[lo:hi].min() != lengths[lo:hi].max():
            where = dict(zip(GROUP, key, strict=True))
            raise BadInputError(f"{path}: target lengths differ within {where}")
    pa.default_memory_pool().release_unused()  # the decoded row groups: not kept for training
    return meta.with_columns(target_length=pl.Series(lengths)), arrays


def store_key(eval_sha256: str, max_windows: int, seed: int) -> str:
    """What the store's bytes follow from: eval.parquet's content and the selection settings."""
    text = json.dumps([FORMAT, eval_sha256, int(max_windows), int(seed)])
    return hashlib.sha256(text.encode()).hexdigest()


def open_eval_store(
    path: Path, eval_sha256: str, max_windows: int, seed: int, root: Path | None
) -> tuple[pl.DataFrame, WindowArrays]:
    """(windows' small columns, their arrays) of eval.parquet at `path`: memory-mapped from
    the store in `root` (built there first if absent or damaged), in memory when it is None."""
    if root is None:
        meta, arrays = fill(path, choose(path, max_windows, seed))
        return meta.drop("__row"), arrays

    def build(folder: Path) -> None:
        meta, _ = fill(path, choose(path, max_windows, seed), folder)
        meta.drop("__row").write_parquet(folder / META)

    key = store_key(eval_sha256, max_windows, seed)
    identity = {
        "format": FORMAT,
        "eval_sha256": eval_sha256,
        "eval_windows": int(max_windows),
        "seed": int(seed),
    }
    folder = keyed_folder(root, f"eval-store-{key[:16]}", identity, FILES, build)
    meta = pl.read_parquet(folder / META)
    return meta, WindowArrays.load(meta, folder)
