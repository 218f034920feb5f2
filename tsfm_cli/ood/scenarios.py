"""The scenarios: in-distribution, natural shifts found in the data, and synthetic drift.

Time layout of each series::

    |──── train ────|─ val ─|── id targets ──|─ gap ─|──── future targets ────|
    start      val_start  id_start        train_end  future_start            end

- `val`: validation targets in [val_start, id_start), the last `val_fraction` of the training
  period, cut out of train.parquet; the context may reach back into train (as a forecast's
  would). Selection (checkpoints, frontier, best strategy) reads these; every other scenario is
  a test scenario.
- `id`: targets in [id_start, train_end) of the series that are trained on; the context may
  reach back into the training period (it is input, not a target), targets never do.
- `future`: targets from future_start on, the whole window after train_end (temporal drift).

Split points given as fractions apply to each series' own time range (series of one plant need
not cover the same days); ISO timestamps are one calendar for all.
- `heldout:<key>=<value>`: series of a held-out group (never in train.parquet), targets before
  train_end, so unseen equipment is the only shift.
- `custom:<name>`: targets whose every point matches the user's condition; matched rows are
  hidden from train.parquet (kept as unobserved grid points).
- `<family>:<severity>`: the same clean ID windows with one drift family applied.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tsfm_cli.drift import FAMILIES, apply_drift, window_spread
from tsfm_cli.ood.config import OodConfig
from tsfm_cli.ood.data import Plant
from tsfm_cli.ood.windows import (
    Block,
    WindowIds,
    cut,
    rng_for,
    subsample,
    target_starts,
)
from tsfm_cli.schema import VAL_SCENARIO


@dataclass
class Natural:
    """One natural scenario: which series, which target range, what else to require."""

    scenario: str
    family: str
    kind: str
    series: list[int]
    lo_us: np.ndarray | None  # [S] per series µs, None = from the start
    hi_us: np.ndarray | None  # [S], None = to the end
    context_lo_us: np.ndarray | None = None
    require: np.ndarray | None = None
    params: dict | None = None


def _at(bounds: np.ndarray | None, i: int) -> int | None:
    return None if bounds is None else int(bounds[i])


def severity_name(severity: float) -> str:
    return f"{severity:g}"


def onset_index(cfg: OodConfig) -> int:
    """Where synthetic drift starts within a window of context_length + horizon points."""
    if cfg.onset == "target":
        return cfg.context_length
    return cfg.context_length - cfg.context_length // 4


def drift_windows(
    family: str,
    values: np.ndarray,
    observed: np.ndarray,
    severity: float,
    onset: int,
    context: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """One drift family on clean windows [W, context + horizon], scaled to each context."""
    if len(values) == 0:
        return values, observed
    spread = window_spread(values[:, :context], observed[:, :context])
    return apply_drift(family, values, observed, severity, onset=onset, spread=spread, rng=rng)


def natural_plan(
    plant: Plant,
    cfg: OodConfig,
    splits: dict[str, np.ndarray],
    held: dict[tuple[str, str], list[int]],
    seen: list[int],
    short: np.ndarray,
) -> list[Natural]:
    """The natural scenarios in their fixed order: id, future, heldout:…, custom:…"""
    plan = [
        Natural("id", "id", "id", seen, splits["id_start"], splits["train_end"]),
        Natural(
            "future",
            "future",
            "natural",
            seen,
            splits["future_start"],
            None,
            context_lo_us=splits["train_end"],
            params={"gap_s": float(np.median(splits["future_start"] - splits["train_end"]) / 1e6)},
        ),
    ]
    for (key, value), members in held.items():
        plan.append(
            Natural(
                f"heldout:{key}={value}",
                "heldout",
                "natural",
                [i for i in members if not short[i]],
                None,
                splits["train_end"],
                params={"key": key, "value": value},
            )
        )
    for name, condition in cfg.custom.items():
        plan.append(
            Natural(
                f"custom:{name}",
                "custom",
                "natural",
                seen,
                None,
                None,
                require=plant.custom[name],
                params={"condition": condition},
            )
        )
    return plan


def val_plan(splits: dict[str, np.ndarray], seen: list[int]) -> list[Natural]:
    """The validation scenario (none when val_fraction is 0)."""
    if not (splits["val_start"] < splits["id_start"]).any():
        return []
    return [
        Natural(
            VAL_SCENARIO,
            VAL_SCENARIO,
            VAL_SCENARIO,
            seen,
            splits["val_start"],
            splits["id_start"],
            params={"targets": "[val_start, id_start)"},
        )
    ]


def hide_custom(block: Block, plant: Plant, context: int) -> tuple[Block, np.ndarray]:
    """A validation window sees the plant as train.parquet does: points matching a custom
    condition are unobserved (they are `custom:` test targets, never validation targets).
    Returns the block so hidden and the [W] mask of windows that keep an observed target point
    (the others are dropped once window ids are given, so ids do not depend on the chunking)."""
    if not plant.custom or block.n == 0:
        return block, np.ones(block.n, dtype=bool)
    matched = np.logical_or.reduce(list(plant.custom.values()))
    index = block.start[:, None] + np.arange(-context, block.horizon)[None, :]
    observed = block.observed & ~matched[index]
    values = np.where(observed, block.values, np.float32(np.nan))
    keep = observed[:, context:].any(axis=1)
    hidden = Block(
        block.scenario,
        block.family,
        block.kind,
        block.severity,
        block.horizon,
        block.series,
        block.start,
        block.target_us,
        values,
        observed,
        block.window_id,
        block.base_window_id,
        block.params,
    )
    return hidden, keep


def natural_blocks(
    plant: Plant,
    cfg: OodConfig,
    plan: list[Natural],
    ids: WindowIds | None,
    progress: Callable[[], None] = lambda: None,
) -> list[Block]:
    """Cut the windows of natural scenarios, one block per scenario × horizon."""
    blocks = []
    for item in plan:
        for horizon in cfg.horizons:
            stride = cfg.stride or horizon
            chosen = []
            for i in item.series:
                starts = target_starts(
                    plant,
                    i,
                    cfg.context_length,
                    horizon,
                    stride,
                    _at(item.lo_us, i),
                    _at(item.hi_us, i),
                    context_lo_us=_at(item.context_lo_us, i),
                    min_observed=cfg.min_observed,
                    require=item.require,
                )
                starts = subsample(
                    starts, cfg.max_windows, rng_for(cfg.seed, item.scenario, horizon, i)
                )
                chosen.append((np.full(len(starts), i), starts + plant.offsets[i]))
            series = np.concatenate([c[0] for c in chosen] or [np.empty(0)]).astype(np.int64)
            start = np.concatenate([c[1] for c in chosen] or [np.empty(0)]).astype(np.int64)
            values, observed = cut(plant, start, cfg.context_length, horizon)
            window_id = ids.take(len(series)) if ids else np.full(len(series), -1, np.int64)
            blocks.append(
                Block(
                    item.scenario,
                    item.family,
                    item.kind,
                    0.0,
                    horizon,
                    series,
                    start,
                    plant.ts[start],
                    values,
                    observed,
                    window_id,
                    window_id,
                    dict(item.params or {}),
                )
            )
            progress()
    return blocks


@dataclass
class Synthetic:
    """One synthetic block, cut only when needed (the drift is seeded per family, severity
    and horizon, so cutting it again gives the same windows)."""

    base: Block  # the clean ID windows of one horizon
    keep: np.ndarray  # which of them
    family: str
    k: int  # severity index
    severity: float
    window_id: np.ndarray

    @property
    def scenario(self) -> str:
        return f"{self.family}:{severity_name(self.severity)}"


def synthetic_plan(cfg: OodConfig, id_blocks: list[Block], ids: WindowIds) -> list[Synthetic]:
    """Each family at each severity applied to the same subset of clean ID windows, in the
    order of eval.parquet (horizon, family, severity); ids are taken now, drift cut later."""
    plan: list[Synthetic] = []
    if cfg.synthetic_windows == 0:
        return plan
    for base in id_blocks:
        keep = []
        for i in np.unique(base.series):
            rows = np.flatnonzero(base.series == i)
            rng = rng_for(cfg.seed, "synthetic", base.horizon, int(i))
            keep.append(subsample(rows, cfg.synthetic_windows, rng))
        keep = np.concatenate(keep or [np.empty(0, np.int64)]).astype(np.int64)
        for family in cfg.families:
            for k, severity in enumerate(cfg.severities):
                plan.append(Synthetic(base, keep, family, k, float(severity), ids.take(len(keep))))
    return plan


def synthetic_block(cfg: OodConfig, item: Synthetic) -> Block:
    """The windows of one planned synthetic block, drift applied."""
    onset = onset_index(cfg)
    base, keep = item.base, item.keep
    rng = rng_for(cfg.seed, item.family, item.k, base.horizon)
    values, observed = drift_windows(
        item.family,
        base.values[keep],
        base.observed[keep],
        item.severity,
        onset,
        cfg.context_length,
        rng,
    )
    params = {
        **FAMILIES[item.family].params,
        "onset": cfg.onset,
        "onset_index": onset,
        "spread": "std of the clean window's observed context",
    }
    return Block(
        item.scenario,
        item.family,
        "synthetic",
        item.severity,
        base.horizon,
        base.series[keep],
        base.start[keep],
        base.target_us[keep],
        values,
        observed,
        item.window_id,
        base.window_id[keep],
        params,
    )
