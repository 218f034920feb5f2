"""Training and evaluation data for the sweep, prepared up front as numpy arrays.

- ``TrainSeries``: every series of ``train.parquet`` as arrays (values NaN where unobserved).
- ``degrade``: the training-data-quality axis: a drift family of ``tsfm_cli.drift`` applied to
  the whole training range of each series (masks stay honest: a point never becomes observed).
- ``DataBudget``: D = distinct training time points. Each series is cut into segments of two
  window lengths; one seeded permutation of all segments (the *data* seed, shared by every run)
  orders them, and budget D takes the shortest prefix holding D points (the last segment cut to
  fit). So a bigger D always contains a smaller one.
- ``BatchSampler``: batch k of a run is drawn from ``default_rng([run seed, k])``, so a resumed run
  sees exactly the batches it would have seen. No DataLoader workers (polars + fork deadlock).
- ``EvalGroup``: the windows of ``eval.parquet`` per split × scenario × horizon (at most
  ``eval_windows``, chosen with the data seed), read a batch at a time from the eval store
  (train/eval_store.py: memory-mapped, or in memory without a store), with each window's identity
  (``series_id``, ``window_id`` and the group-key columns eval.parquet carries). ``split`` is
  eval.parquet's column ("val": validation windows from the end of the training period, used for
  every selection; "test": everything else); an eval.parquet without it is all "test".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tsfm_cli.errors import BadInputError
from tsfm_cli.groupkeys import breakdown, eval_group_keys
from tsfm_cli.schema import VAL_SCENARIO
from tsfm_cli.train.config import CLEAN
from tsfm_cli.windows import WindowArrays, runs


@dataclass
class TrainSeries:
    """The training series, sorted by series_id. ``flat_values``/``flat_observed`` hold every
    series end to end (series i at ``offsets[i]``; memory-mapped from the store, see
    train/store.py); ``values``/``observed`` are per-series views of them."""

    series_ids: list[str]
    flat_values: np.ndarray  # float32 [total], NaN where unobserved
    flat_observed: np.ndarray  # bool [total]
    offsets: np.ndarray  # int64 [n]
    lengths: np.ndarray  # int64 [n]
    start_s: np.ndarray  # int64 [n] first timestamp, seconds since the epoch
    freq_s: np.ndarray  # float64 [n]

    @classmethod
    def from_lists(cls, series_ids, values, observed, start_s, freq_s) -> TrainSeries:
        lengths = np.array([len(v) for v in values], dtype=np.int64)
        return cls(
            list(series_ids),
            np.concatenate(values).astype(np.float32) if values else np.empty(0, np.float32),
            np.concatenate(observed).astype(bool) if observed else np.empty(0, bool),
            np.cumsum(lengths) - lengths,
            lengths,
            np.asarray(start_s, dtype=np.int64),
            np.asarray(freq_s, dtype=np.float64),
        )

    @property
    def values(self) -> list[np.ndarray]:
        return [
            self.flat_values[o : o + n] for o, n in zip(self.offsets, self.lengths, strict=True)
        ]

    @property
    def observed(self) -> list[np.ndarray]:
        return [
            self.flat_observed[o : o + n] for o, n in zip(self.offsets, self.lengths, strict=True)
        ]

    @property
    def total_points(self) -> int:
        return int(self.lengths.sum())


def load_train(
    path: Path, store_root: Path | None = None, sha256: str | None = None
) -> TrainSeries:
    """train.parquet's series: memory-mapped from the store in ``store_root`` (keyed by
    ``sha256``, train.parquet's content hash), or in memory without one."""
    from tsfm_cli.stagedir import sha256_file
    from tsfm_cli.train.store import open_store

    if store_root is not None and sha256 is None:
        sha256 = sha256_file(path)
    index, values, observed = open_store(path, sha256 or "", store_root)
    return TrainSeries(
        series_ids=index["series_id"].cast(pl.String).to_list(),
        flat_values=values,
        flat_observed=observed,
        offsets=index["offset"].to_numpy().astype(np.int64),
        lengths=index["length"].to_numpy().astype(np.int64),
        start_s=index["start_s"].to_numpy().astype(np.int64),
        freq_s=index["freq_s"].to_numpy().astype(np.float64),
    )


def parse_quality(quality: str) -> tuple[str, float] | None:
    """ "clean" → None; "<family>:<severity>" → (family, severity), checked against drift.py."""
    if quality == CLEAN:
        return None
    from tsfm_cli import drift

    family, _, severity = quality.partition(":")
    try:
        level = float(severity)
    except ValueError:
        level = float("nan")
    problem = drift.check(family, level)
    if problem:
        raise ValueError(f"train_quality '{quality}': {problem} (expected clean or family:level)")
    return family, level


def degrade(series: TrainSeries, quality: str, seed: int) -> TrainSeries:
    """The training series degraded by one drift family over their whole range."""
    parsed = parse_quality(quality)
    if parsed is None:
        return series
    from tsfm_cli import drift

    family, severity = parsed
    rng = np.random.default_rng([seed, 0x7175])
    values, observed = [], []
    for v, o, freq in zip(series.values, series.observed, series.freq_s, strict=True):
        spread = drift.window_spread(v[None], o[None])
        nv, no = drift.apply_drift(
            family, v[None], o[None], severity, onset=0, spread=spread, rng=rng, freq_s=freq
        )
        values.append(nv[0])
        observed.append(no[0] & o)
    return TrainSeries.from_lists(
        series.series_ids, values, observed, series.start_s, series.freq_s
    )


@dataclass
class Segment:
    series: int
    start: int
    length: int


@dataclass
class DataBudget:
    """Segments of the training series in the data seed's fixed order (see module docstring)."""

    segments: list[Segment]
    window: int
    total_points: int

    @classmethod
    def build(cls, series: TrainSeries, window: int, seed: int) -> DataBudget:
        segments: list[Segment] = []
        size = 2 * window
        for i, v in enumerate(series.values):
            n = len(v)
            if n < window:
                continue
            count = max(1, n // size)
            for k in range(count):
                start = k * size
                length = size if k < count - 1 else n - start
                segments.append(Segment(i, start, length))
        if not segments:
            raise BadInputError(
                f"no training series holds one window of {window} points "
                "(context + training horizon); use a shorter context or more data"
            )
        order = np.random.default_rng([seed, 0xD474]).permutation(len(segments))
        total = sum(s.length for s in segments)
        return cls([segments[i] for i in order], window, total)

    def points(self, budget: int | float) -> int:
        """Budget (fraction ≤ 1 or count) → the number of time points requested."""
        if budget <= 1.0:
            return max(self.window, int(round(budget * self.total_points)))
        return int(budget)

    def take(self, budget: int | float) -> list[Segment]:
        """The nested prefix of segments holding the budget (D = sum of their lengths)."""
        wanted = self.points(budget)
        chosen, have = [], 0
        for seg in self.segments:
            if have >= wanted:
                break
            room = wanted - have
            if seg.length <= room:
                chosen.append(seg)
                have += seg.length
            elif room >= self.window:
                chosen.append(Segment(seg.series, seg.start, room))
                have += room
            else:
                break
        return chosen or [self.segments[0]]


@dataclass
class BatchSampler:
    """Windows of ``window`` points sampled uniformly from the chosen segments."""

    series: TrainSeries
    segments: list[Segment]
    window: int
    batch_size: int
    seed: int

    def __post_init__(self) -> None:
        # each segment's place in the series' flat arrays, and its first time stamp; windows
        # are read from those arrays (memory-mapped) per batch, never copied as a whole
        series = self.series
        self._base = np.array(
            [series.offsets[seg.series] + seg.start for seg in self.segments], dtype=np.int64
        )
        self._freq = np.array([series.freq_s[seg.series] for seg in self.segments])
        self._t0 = np.array(
            [
                series.start_s[seg.series] + seg.start * series.freq_s[seg.series]
                for seg in self.segments
            ],
            dtype=np.float64,
        )
        self._starts = np.asarray(
            [seg.length - self.window + 1 for seg in self.segments], dtype=np.int64
        )
        self._weights = self._starts / self._starts.sum()

    @property
    def data_points(self) -> int:
        return int(sum(s.length for s in self.segments))

    def batch(self, step: int, rank: int = 0) -> dict[str, np.ndarray]:
        """Batch ``step`` of this run; each DDP rank draws its own windows."""
        rng = np.random.default_rng([self.seed, step] if rank == 0 else [self.seed, step, rank])
        seg = rng.choice(len(self._base), size=self.batch_size, p=self._weights)
        start = (rng.random(self.batch_size) * self._starts[seg]).astype(np.int64)
        local = start[:, None] + np.arange(self.window)[None, :]  # within the segment
        idx = self._base[seg][:, None] + local
        return {
            "values": np.nan_to_num(self.series.flat_values[idx], nan=0.0).astype(np.float32),
            "observed": np.asarray(self.series.flat_observed[idx]),
            "times": self._t0[seg][:, None] + local * self._freq[seg][:, None],
            "pick": rng.random(),  # e.g. the encoder's horizon for this batch
        }


@dataclass
class EvalGroup:
    """One split × scenario × horizon: rows ``lo:hi`` of the evaluation windows' arrays (in
    memory or memory-mapped from the eval store, train/eval_store.py), read a batch at a time."""

    split: str
    scenario: str
    horizon: int
    kind: str
    family: str
    severity: float
    arrays: WindowArrays
    lo: int
    hi: int
    width: int  # target length
    windows: pl.DataFrame  # [n] rows: series_id, window_id and sensor and group-key columns
    keys: dict[str, np.ndarray] = field(default_factory=dict)  # group key → [n] value per window
    crop: int = 0  # context points dropped from the start (embed-bench's shorter context)

    @property
    def n_windows(self) -> int:
        return self.hi - self.lo

    @property
    def context_length(self) -> int:
        return self.arrays.context_length - self.crop

    def batch(self, lo: int, hi: int) -> dict[str, np.ndarray]:
        """Windows lo:hi of the group (float32, 0 where unobserved), their masks, times [n,
        Tc + H] in seconds and sampling intervals."""
        at, end = self.lo + lo, self.lo + min(hi, self.n_windows)
        read = self.arrays.read(at, end, self.width, np.float32, self.crop)
        context, target, c_obs, t_obs = read
        return {
            "context": np.nan_to_num(context, nan=0.0),
            "context_observed": c_obs,
            "target": np.nan_to_num(target, nan=0.0),
            "target_observed": t_obs,
            "times": self.arrays.times(at, end, self.width, self.crop),
            "freq_s": self.arrays.freq_s[at:end],
        }

    def breakdown(self, per_window: dict[str, list[np.ndarray]]) -> list[dict[str, Any]]:
        """Rows per group-key value (tsfm_cli/groupkeys.py) from evaluate's per-window parts."""
        if not self.keys:
            return []
        values = {m: np.concatenate(parts).astype(np.float64) for m, parts in per_window.items()}
        return [{**self.describe(), **row} for row in breakdown(self.keys, values)]

    def describe(self) -> dict[str, object]:
        """The group's columns in results.parquet."""
        return {
            "split": self.split,
            "scenario": self.scenario,
            "kind": self.kind,
            "family": self.family,
            "severity": self.severity,
            "horizon": self.horizon,
            "n_windows": self.n_windows,
        }


def select_windows(frame: pl.DataFrame, max_windows: int, seed: int) -> pl.DataFrame:
    """The evaluated windows of eval.parquet: at most ``max_windows`` per scenario × horizon,
    the same ones in every scenario and horizon where they exist (paired comparison), sorted by
    scenario, horizon, series_id, window_id. The models and the baselines both score these."""
    parts = []
    for _, part in frame.sort("scenario", "horizon", "series_id", "window_id").group_by(
        ["scenario", "horizon"], maintain_order=True
    ):
        if part.height > max_windows:
            base = "base_window_id" if "base_window_id" in part.columns else "window_id"
            key = pl.concat_str(pl.col("series_id"), pl.col(base).cast(pl.String), separator="#")
            part = (
                part.with_columns(_key=key.hash(seed=seed))
                .sort("_key")
                .head(max_windows)
                .drop("_key")
            )
        parts.append(part)
    return pl.concat(parts) if parts else frame.clear()


def load_eval(
    path: Path,
    scenarios_path: Path | None,
    max_windows: int,
    seed: int,
    notes: list[str] | None = None,
    store_root: Path | None = None,
    sha256: str | None = None,
) -> tuple[pl.DataFrame, WindowArrays, list[EvalGroup]]:
    """(the selected windows' small columns, their arrays, the groups over them) of
    eval.parquet: memory-mapped from the eval store in ``store_root`` (keyed by ``sha256``,
    eval.parquet's content hash, and the selection) or in memory without one. ``notes``
    collects what a user should be told once (e.g. an eval.parquet from before the validation
    split)."""
    from tsfm_cli.stagedir import sha256_file
    from tsfm_cli.train.eval_store import GROUP, no_split_note, open_eval_store

    if store_root is not None and sha256 is None:
        sha256 = sha256_file(path)
    if notes is not None and "split" not in pl.scan_parquet(path).collect_schema().names():
        notes.append(no_split_note(path))
    meta, arrays = open_eval_store(path, sha256 or "", max_windows, seed, store_root)
    key_columns = eval_group_keys(meta)
    # what window_metrics.parquet carries per window: its identity, sensor and group keys
    keys = [c for c in ("series_id", "window_id", "sensor") if c in meta.columns]
    keys += key_columns
    kinds: dict[str, tuple[str, str, float]] = {}
    if scenarios_path is not None and scenarios_path.is_file():
        for row in pl.read_parquet(scenarios_path).iter_rows(named=True):
            kinds[row["scenario"]] = (row.get("kind"), row.get("family"), row.get("severity"))
    groups = []
    for (split, scenario, horizon), lo, hi in runs(meta, GROUP):
        part = meta.slice(lo, hi - lo)
        kind, family, severity = kinds.get(scenario, (None, None, None))
        if scenario == VAL_SCENARIO and kind is None:
            kind = VAL_SCENARIO
        if family is None and "family" in part.columns:
            family = part["family"][0]
        if severity is None and "severity" in part.columns:
            severity = part["severity"][0]
        groups.append(
            EvalGroup(
                split=split,
                scenario=scenario,
                horizon=int(horizon),
                kind=kind or ("id" if scenario == "id" else "synthetic"),
                family=family or scenario,
                severity=float(severity or 0.0),
                arrays=arrays,
                lo=lo,
                hi=hi,
                width=int(part["target_length"][0]),
                windows=part.select(keys),
                keys={k: part[k].to_numpy() for k in key_columns},
            )
        )
    if not groups:
        raise BadInputError(f"{path}: no evaluation windows")
    return meta, arrays, groups
