"""Evaluation windows: where they may start, how they are cut, how they become eval.parquet rows.

A window is `context_length` points of context followed by `horizon` points of target, cut from
one series' regular grid. Candidates are chosen by target-start index, vectorised per series.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from tsfm_cli.ood.data import Plant
from tsfm_cli.schema import VAL_SCENARIO

EVAL_SCHEMA = {
    "scenario": pl.String,
    "split": pl.String,  # "val" for validation windows, "test" for every other row
    "family": pl.String,
    "severity": pl.Float64,
    "horizon": pl.Int32,
    "series_id": pl.String,
    "sensor": pl.String,
    "freq_s": pl.Int64,
    "window_id": pl.Int64,
    "base_window_id": pl.Int64,
    "target_start": pl.Datetime("us", "UTC"),
    "context": pl.List(pl.Float32),
    "context_observed": pl.List(pl.Boolean),
    "target": pl.List(pl.Float32),
    "target_observed": pl.List(pl.Boolean),
}


def rng_for(seed: int, *parts: str | int) -> np.random.Generator:
    """An independent generator per (seed, parts): the order of work never changes results."""
    words = [seed] + [zlib.crc32(p.encode()) if isinstance(p, str) else int(p) for p in parts]
    return np.random.default_rng(words)


@dataclass
class Block:
    """Windows of one scenario at one horizon. values/observed: [W, context + horizon]."""

    scenario: str
    family: str
    kind: str
    severity: float
    horizon: int
    series: np.ndarray  # [W] series index
    start: np.ndarray  # [W] row of the first target point in the chunk it was cut from
    target_us: np.ndarray  # [W] timestamp of the first target point, µs
    values: np.ndarray
    observed: np.ndarray
    window_id: np.ndarray  # [W]
    base_window_id: np.ndarray  # [W] the clean ID window a synthetic one was made from
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.series)

    def subset(self, keep: np.ndarray) -> Block:
        """The windows where `keep` (a [W] mask or index array) selects them."""
        return Block(
            self.scenario,
            self.family,
            self.kind,
            self.severity,
            self.horizon,
            self.series[keep],
            self.start[keep],
            self.target_us[keep],
            self.values[keep],
            self.observed[keep],
            self.window_id[keep],
            self.base_window_id[keep],
            self.params,
        )


class WindowIds:
    """Hands out window ids in creation order (which is deterministic)."""

    def __init__(self) -> None:
        self.next = 0

    def take(self, n: int) -> np.ndarray:
        ids = np.arange(self.next, self.next + n, dtype=np.int64)
        self.next += n
        return ids


def target_starts(
    plant: Plant,
    i: int,
    context: int,
    horizon: int,
    stride: int,
    lo_us: int | None,
    hi_us: int | None,
    *,
    context_lo_us: int | None = None,
    min_observed: float = 0.5,
    require: np.ndarray | None = None,
) -> np.ndarray:
    """Local target-start indices of series i whose target lies in [lo_us, hi_us) and whose
    context starts at or after context_lo_us; anchored at the latest possible window."""
    rows = plant.rows(i)
    ts = plant.ts[rows]
    first = context if lo_us is None else max(int(np.searchsorted(ts, lo_us, "left")), context)
    if context_lo_us is not None:
        first = max(first, int(np.searchsorted(ts, context_lo_us, "left")) + context)
    end = len(ts) if hi_us is None else int(np.searchsorted(ts, hi_us, "left"))
    last = end - horizon
    if last < first:
        return np.empty(0, dtype=np.int64)
    starts = np.arange(last, first - 1, -stride, dtype=np.int64)[::-1]
    counts = np.concatenate([[0], np.cumsum(plant.observed[rows], dtype=np.int64)])
    ok = (counts[starts] - counts[starts - context]) >= min_observed * context
    ok &= (counts[starts + horizon] - counts[starts]) > 0
    if require is not None:
        matched = np.concatenate([[0], np.cumsum(require[rows], dtype=np.int64)])
        ok &= (matched[starts + horizon] - matched[starts]) == horizon
    starts = starts[ok]
    return starts[context_varies(plant.values[rows], plant.observed[rows], starts, context)]


def context_varies(
    values: np.ndarray, observed: np.ndarray, starts: np.ndarray, context: int
) -> np.ndarray:
    """[len(starts)] bool: the observed context before each start holds two different values.

    Metrics and shift measures are instance-scaled by the context's std; a constant context
    (a label column, a closed valve, a sensor stuck at 0) makes that scale the 1e-5 floor, so
    one wrong point weighs 1e5 and a handful of such windows outweigh all others."""
    if len(starts) == 0:
        return np.zeros(0, dtype=bool)
    index = starts[:, None] + np.arange(-context, 0)[None, :]
    vals = values[index].astype(np.float64)
    obs = observed[index] & np.isfinite(vals)
    hi = np.where(obs, vals, -np.inf).max(axis=1)
    lo = np.where(obs, vals, np.inf).min(axis=1)
    magnitude = np.maximum(np.abs(hi), np.abs(lo))
    return (hi > lo) & (hi - lo > 1e-6 * np.where(np.isfinite(magnitude), magnitude, 0.0))


def subsample(starts: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    if len(starts) <= limit:
        return starts
    return np.sort(rng.choice(starts, size=limit, replace=False))


def cut(plant: Plant, starts: np.ndarray, context: int, horizon: int):
    """values, observed [W, context + horizon] for global target-start rows `starts`."""
    index = starts[:, None] + np.arange(-context, horizon)[None, :]
    return plant.values[index], plant.observed[index]


def _lists(matrix: np.ndarray, dtype: pl.DataType) -> pl.Series:
    rows, width = matrix.shape
    flat = pl.Series(matrix.reshape(-1), nan_to_null=dtype == pl.Float32).cast(dtype)
    return flat.reshape((rows, width)).cast(pl.List(dtype))


def eval_schema(plant: Plant) -> dict[str, pl.DataType]:
    """EVAL_SCHEMA, then one String column per carried group key."""
    return {**EVAL_SCHEMA, **dict.fromkeys(plant.carried, pl.String)}


def concat_blocks(parts: list[Block]) -> Block:
    """One block from the same block cut from several chunks of series (in chunk order)."""
    first = parts[0]

    def joined(name: str) -> np.ndarray:
        return np.concatenate([getattr(p, name) for p in parts])

    return Block(
        first.scenario,
        first.family,
        first.kind,
        first.severity,
        first.horizon,
        joined("series"),
        joined("start"),
        joined("target_us"),
        joined("values"),
        joined("observed"),
        joined("window_id"),
        joined("base_window_id"),
        first.params,
    )


def block_frame(block: Block, plant: Plant, context: int) -> pl.DataFrame:
    """The eval.parquet rows of one block (columns in eval_schema order)."""
    schema = eval_schema(plant)
    if block.n == 0:
        return pl.DataFrame(schema=schema)
    n = block.n
    ids = np.asarray(plant.series_ids, dtype=object)[block.series]
    sensors = np.asarray(plant.sensors, dtype=object)[block.series]
    frame = pl.DataFrame(
        {
            "scenario": [block.scenario] * n,
            "split": ["val" if block.scenario == VAL_SCENARIO else "test"] * n,
            "family": [block.family] * n,
            "severity": np.full(n, block.severity, dtype=np.float64),
            "horizon": np.full(n, block.horizon, dtype=np.int32),
            "series_id": ids.tolist(),
            "sensor": sensors.tolist(),
            "freq_s": plant.freq_s[block.series],
            "window_id": block.window_id,
            "base_window_id": block.base_window_id,
            "target_start": pl.Series(block.target_us, dtype=pl.Int64).cast(
                pl.Datetime("us", "UTC")
            ),
            "context": _lists(block.values[:, :context], pl.Float32),
            "context_observed": _lists(block.observed[:, :context], pl.Boolean),
            "target": _lists(block.values[:, context:], pl.Float32),
            "target_observed": _lists(block.observed[:, context:], pl.Boolean),
            **{key: plant.groups[key][block.series].tolist() for key in plant.carried},
        }
    )
    return frame.cast(schema)
