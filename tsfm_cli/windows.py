"""eval.parquet's window rows → arrays: one reader for the models' evaluation and the baselines,
so both see exactly the same values and masks. A ground-floor module (polars and numpy only).

``WindowArrays`` holds windows as eval.parquet stores them (values in its dtype, NaN where null;
masks with null → False; each target padded with NaN to the widest horizon), in memory or as
train's eval store (train/eval_store.py: ``.npy`` files mapped per batch). ``read`` gives a
batch of rows exactly as the whole-frame reader gave them: values in the asked dtype, a mask
False where its value is missing or not finite. A reader's memory is the batch, never the
whole array.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

LIST_COLUMNS = ("context", "context_observed", "target", "target_observed")
ARRAY_FILES = tuple(f"{name}.npy" for name in LIST_COLUMNS)


def list_array(column: pl.Series, fill) -> np.ndarray:
    """A list column of equal-length lists → [rows, width] array in the column's own dtype,
    nulls set to `fill` (through polars' fixed-width arrays: no Python object per element)."""
    filled = column.list.eval(pl.element().fill_null(fill))
    return filled.list.to_array(filled.list.len().max()).to_numpy()


def value_dtype(list_type: pl.DataType) -> np.dtype:
    """The numpy dtype `list_array` gives for a list column of values (nulls filled with NaN)."""
    inner = getattr(list_type, "inner", None)
    return np.dtype(np.float32) if inner == pl.Float32 else np.dtype(np.float64)


def time_base(meta: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(target_start in epoch seconds, freq_s) per window as float64; 0 and 1 when absent."""
    if "target_start" in meta.columns:
        t0 = meta["target_start"].dt.epoch("s").to_numpy().astype(np.float64)
    else:
        t0 = np.zeros(meta.height)
    if "freq_s" in meta.columns:
        freq = meta["freq_s"].to_numpy().astype(np.float64)
    else:
        freq = np.ones(meta.height)
    return t0, freq


class RaggedRow(ValueError):
    """A row whose list lengths do not fit the others (`row`: its index in the part written)."""

    def __init__(self, row: int, message: str) -> None:
        super().__init__(message)
        self.row = row


@dataclass
class WindowArrays:
    """Windows in eval.parquet's own dtypes (see module docstring); row i is window i of the
    metadata frame it was built with. In memory (``memory``), or ``.npy`` files in ``folder``
    mapped only while a batch is written or read: touched pages leave the process with the
    mapping (the page cache keeps them), so its resident memory is the batch, not the store."""

    target_start_s: np.ndarray  # [n] float64
    freq_s: np.ndarray  # [n] float64
    context_length: int
    # context [n, Tc] NaN where null; context_observed [n, Tc] bool (null → False); target
    # [n, H_max] NaN where null and beyond the window's own horizon; target_observed likewise
    memory: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
    folder: Path | None = None

    def arrays(self, mode: str = "r") -> tuple[np.ndarray, ...]:
        """(context, context_observed, target, target_observed): in memory, or mapped now
        (dropped with the last reference: keep them no longer than a batch)."""
        if self.memory is not None:
            return self.memory
        return tuple(np.load(self.folder / name, mmap_mode=mode) for name in ARRAY_FILES)

    @classmethod
    def allocate(
        cls,
        meta: pl.DataFrame,
        widths: tuple[int, int],
        dtypes: tuple[np.dtype, np.dtype],
        folder: Path | None = None,
    ) -> WindowArrays:
        """Empty arrays for the windows of `meta`: in memory, or `.npy` files in `folder`."""
        n = meta.height
        shapes = ((n, widths[0]), (n, widths[0]), (n, widths[1]), (n, widths[1]))
        kinds = (dtypes[0], bool, dtypes[1], bool)
        if folder is None:
            memory = tuple(np.empty(shape, t) for shape, t in zip(shapes, kinds, strict=True))
            return cls(*time_base(meta), widths[0], memory=memory)
        for name, shape, dtype in zip(ARRAY_FILES, shapes, kinds, strict=True):
            # the file, sized (its mapping is dropped at once); rows are written by `put`
            np.lib.format.open_memmap(folder / name, "w+", dtype, shape)
        return cls(*time_base(meta), widths[0], folder=folder)

    @classmethod
    def load(cls, meta: pl.DataFrame, folder: Path) -> WindowArrays:
        """The arrays of `folder` (mapped per batch)."""
        width = np.load(folder / ARRAY_FILES[0], mmap_mode="r").shape[1]
        return cls(*time_base(meta), width, folder=folder)

    @classmethod
    def from_frame(cls, frame: pl.DataFrame) -> WindowArrays:
        """Every row of an eval.parquet frame, in memory."""
        lengths = (frame["context"].list.len().max() or 0, frame["target"].list.len().max() or 0)
        dtypes = (value_dtype(frame["context"].dtype), value_dtype(frame["target"].dtype))
        arrays = cls.allocate(frame, lengths, dtypes)
        arrays.put(frame, np.arange(frame.height))
        return arrays

    def put(self, part: pl.DataFrame, dest: np.ndarray) -> np.ndarray:
        """Write eval.parquet rows `part` to rows `dest`; → each row's target length. Rows of
        one target length at a time (one or two horizons), never one row at a time."""
        context_out, c_obs_out, target_out, t_obs_out = self.arrays("r+")
        width = context_out.shape[1]
        for name in ("context", "context_observed"):
            lengths = part[name].list.len().to_numpy()
            bad = np.flatnonzero(lengths != width)
            if bad.size:
                raise RaggedRow(int(bad[0]), f"{name} length {lengths[bad[0]]}, others {width}")
        context = list_array(part["context"], float("nan"))
        context_out[dest] = context.astype(context_out.dtype)
        c_obs_out[dest] = list_array(part["context_observed"], False)
        lengths = part["target"].list.len().to_numpy()
        for length in np.unique(lengths):
            rows = lengths == length
            if length > target_out.shape[1]:
                raise RaggedRow(int(np.argmax(rows)), f"target length {length} over the horizon")
            sub = part.filter(pl.Series(rows))
            at = dest[rows]
            values = list_array(sub["target"], float("nan"))
            target_out[at, :length] = values.astype(target_out.dtype)
            target_out[at, length:] = np.nan
            t_obs_out[at, :length] = list_array(sub["target_observed"], False)
            t_obs_out[at, length:] = False
        for array in (context_out, c_obs_out, target_out, t_obs_out):
            if isinstance(array, np.memmap):
                array.flush()
        return lengths

    def read(self, lo: int, hi: int, width: int, dtype, crop: int = 0):
        """(context [n, Tc − crop], target [n, width], context_observed, target_observed) of
        rows lo:hi: values as `dtype`, NaN where not observed, a mask False where its value is
        missing or not finite (exactly what the whole-frame reader gave). Copies: nothing
        returned refers to the mapped files."""
        context_in, c_obs_in, target_in, t_obs_in = self.arrays()
        context = np.array(context_in[lo:hi, crop:], dtype=dtype)
        target = np.array(target_in[lo:hi, :width], dtype=dtype)
        c_obs = np.asarray(c_obs_in[lo:hi, crop:]) & np.isfinite(context)
        t_obs = np.asarray(t_obs_in[lo:hi, :width]) & np.isfinite(target)
        return context, target, c_obs, t_obs

    def times(self, lo: int, hi: int, width: int, crop: int = 0) -> np.ndarray:
        """[n, Tc − crop + width] float64 seconds of rows lo:hi (context, then target)."""
        n_ctx = self.context_length
        steps = np.arange(n_ctx + width)[crop:] - n_ctx
        return self.target_start_s[lo:hi, None] + steps[None, :] * self.freq_s[lo:hi, None]


def runs(meta: pl.DataFrame, by: list[str]) -> list[tuple[tuple, int, int]]:
    """(key values, lo, hi) of each run of consecutive rows of `meta` equal on `by`."""
    if meta.is_empty():
        return []
    bounds = (
        meta.select(by)
        .with_row_index("_i")
        .with_columns(_run=pl.struct(by).rle_id())
        .group_by("_run", maintain_order=True)
        .agg(pl.col("_i").min().alias("lo"), pl.col("_i").max().alias("hi"), *map(pl.first, by))
    )
    return [
        (tuple(row[c] for c in by), row["lo"], row["hi"] + 1)
        for row in bounds.iter_rows(named=True)
    ]
