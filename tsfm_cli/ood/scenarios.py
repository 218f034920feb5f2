"""The scenarios: in-distribution, natural shifts found in the data, and synthetic drift.

Time layout (split points are global, the same calendar for every series)::

    |──── train ────|── id targets ──|─ gap ─|──── future targets ────|
    start        id_start        train_end  future_start            end

- `id`: targets in [id_start, train_end) of the series that are trained on; the context may
  reach back into the training period (it is input, not a target), targets never do.
- `future`: targets from future_start on, the whole window after train_end (temporal drift).
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


@dataclass
class Natural:
    """One natural scenario: which series, which target range, what else to require."""

    scenario: str
    family: str
    kind: str
    series: list[int]
    lo_us: int
    hi_us: int | None
    context_lo_us: int | None = None
    require: np.ndarray | None = None
    params: dict | None = None


def severity_name(severity: float) -> str:
    return f"{severity:g}"


def onset_index(cfg: OodConfig) -> int:
    """Where synthetic drift starts within a window of context_length + horizon points."""
    if cfg.onset == "target":
        return cfg.context_length
    return cfg.context_length - cfg.context_length // 4


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
                    item.lo_us,
                    item.hi_us,
                    context_lo_us=item.context_lo_us,
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
                    values,
                    observed,
                    window_id,
                    window_id,
                    dict(item.params or {}),
                )
            )
            progress()
    return blocks


def synthetic_blocks(
    plant: Plant,
    cfg: OodConfig,
    id_blocks: list[Block],
    ids: WindowIds,
    progress: Callable[[], None] = lambda: None,
) -> list[Block]:
    """Each family at each severity applied to the same subset of clean ID windows."""
    onset = onset_index(cfg)
    blocks = []
    if cfg.synthetic_windows == 0:
        return blocks
    for base in id_blocks:
        keep = []
        for i in np.unique(base.series):
            rows = np.flatnonzero(base.series == i)
            rng = rng_for(cfg.seed, "synthetic", base.horizon, int(i))
            keep.append(subsample(rows, cfg.synthetic_windows, rng))
        keep = np.concatenate(keep or [np.empty(0, np.int64)]).astype(np.int64)
        clean_v, clean_o = base.values[keep], base.observed[keep]
        spread = window_spread(clean_v[:, : cfg.context_length], clean_o[:, : cfg.context_length])
        freq = plant.freq_s[base.series[keep]]
        for family in cfg.families:
            for k, severity in enumerate(cfg.severities):
                rng = rng_for(cfg.seed, family, k, base.horizon)
                values, observed = (clean_v, clean_o)
                if len(keep):
                    values, observed = apply_drift(
                        family,
                        clean_v,
                        clean_o,
                        severity,
                        onset=onset,
                        spread=spread,
                        rng=rng,
                        freq_s=float(freq[0]),
                    )
                params = {
                    **FAMILIES[family].params,
                    "onset": cfg.onset,
                    "onset_index": onset,
                    "spread": "std of the clean window's observed context",
                }
                blocks.append(
                    Block(
                        f"{family}:{severity_name(severity)}",
                        family,
                        "synthetic",
                        float(severity),
                        base.horizon,
                        base.series[keep],
                        base.start[keep],
                        values,
                        observed,
                        ids.take(len(keep)),
                        base.window_id[keep],
                        params,
                    )
                )
                progress()
    return blocks
