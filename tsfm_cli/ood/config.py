"""Settings of `tsfm ood-split` (recipe section `ood-split:`) and their checks."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from tsfm_cli.drift import FAMILIES, check
from tsfm_cli.errors import BadInputError
from tsfm_cli.recipe import RecipeSource

SPLIT_KEYS = ("id_start", "train_end", "future_start")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


@dataclass
class OodConfig:
    """Recipe keys of `ood-split:`; lengths are in time points of each series' own grid."""

    context_length: int = 512  # points of context in every window (a multiple of patch_size)
    horizons: list[int] = field(default_factory=lambda: [32, 128])  # target lengths, time points
    patch_size: int = 32  # lengths should be multiples of it (a warning otherwise); 0 = no check
    stride: int | None = None  # points between target starts; None = the horizon
    max_windows: int = 64  # per series, scenario and horizon
    synthetic_windows: int = 8  # ID windows per series and horizon that each drift is applied to
    min_observed: float = 0.5  # minimum observed fraction of a window's context
    # split points: a fraction of each series' own time range, or an ISO timestamp (UTC)
    id_start: float | str = 0.6  # training ends here; ID targets lie in [id_start, train_end)
    train_end: float | str = 0.75  # end of the training period
    future_start: float | str = 0.8  # `future` targets start here (the gap follows train_end)
    # the last val_fraction of each series' training period [start, id_start) becomes the
    # validation targets (scenario "val", split "val"); 0 = no validation windows
    val_fraction: float = 0.1
    heldout: list[str] = field(default_factory=list)  # "key=value", or "key": one value by seed
    custom: dict[str, str] = field(default_factory=dict)  # name → SQL condition on the columns
    families: list[str] = field(default_factory=lambda: list(FAMILIES))
    severities: list[float] = field(default_factory=lambda: [1.0, 2.0, 3.0])
    onset: Literal["context", "target"] = "context"  # where synthetic drift starts
    seed: int = 0


def _fail(source: RecipeSource, key: str, message: str) -> None:
    raise BadInputError(f"{source.where(key)}: {message}")


def check_config(cfg: OodConfig, source: RecipeSource) -> None:
    """Checks that need no data; raise BadInputError naming the key."""
    if cfg.context_length < 2:
        _fail(source, "context_length", f"must be at least 2, got {cfg.context_length}")
    if not cfg.horizons or any(h < 1 for h in cfg.horizons):
        _fail(source, "horizons", f"must be a non-empty list of positive lengths: {cfg.horizons}")
    if len(set(cfg.horizons)) != len(cfg.horizons):
        _fail(source, "horizons", f"lists a horizon twice: {cfg.horizons}")
    if not 0.0 <= cfg.val_fraction < 1.0:
        _fail(source, "val_fraction", f"must be within [0, 1), got {cfg.val_fraction}")
    if cfg.patch_size < 0:
        _fail(source, "patch_size", "must be ≥ 0")
    if cfg.stride is not None and cfg.stride < 1:
        _fail(source, "stride", f"must be ≥ 1, got {cfg.stride}")
    if cfg.max_windows < 1:
        _fail(source, "max_windows", f"must be ≥ 1, got {cfg.max_windows}")
    if cfg.synthetic_windows < 0:
        _fail(source, "synthetic_windows", f"must be ≥ 0, got {cfg.synthetic_windows}")
    if not 0.0 <= cfg.min_observed <= 1.0:
        _fail(source, "min_observed", f"must be within [0, 1], got {cfg.min_observed}")
    for family in cfg.families:
        if family not in FAMILIES:
            _fail(
                source, "families", f"unknown drift family '{family}' (see `tsfm ood-split --list`)"
            )
    if cfg.families and not cfg.severities:
        _fail(source, "severities", "must list at least one severity")
    if len(set(cfg.severities)) != len(cfg.severities):
        _fail(source, "severities", f"lists a severity twice: {cfg.severities}")
    for family in cfg.families:
        for severity in cfg.severities:
            problem = check(family, severity)
            if problem:
                _fail(source, "severities", problem)
    for entry in cfg.heldout:
        key, _, value = entry.partition("=")
        if not key or ("=" in entry and not value):
            _fail(source, "heldout", f"'{entry}' is not 'key=value' or 'key'")
    for name in cfg.custom:
        if not name or any(c in name for c in ": "):
            _fail(
                source, "custom", f"scenario name '{name}' must be non-empty without ':' or spaces"
            )


def split_time_us(
    value: float | str, starts: np.ndarray, ends: np.ndarray, source: RecipeSource, key: str
) -> np.ndarray:
    """A split point per series as UTC µs: a fraction of each series' own [first, last] time,
    or one ISO timestamp for the whole plant."""
    if isinstance(value, str):
        try:
            when = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            _fail(source, key, f"'{value}' is neither a fraction in [0, 1] nor an ISO timestamp")
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        return np.full(len(starts), (when - _EPOCH) // dt.timedelta(microseconds=1), np.int64)
    if not 0.0 <= value <= 1.0:
        _fail(source, key, f"a fraction must be within [0, 1], got {value}")
    return starts + np.round(value * (ends - starts)).astype(np.int64)


def iso_time(us: int) -> str:
    """A split point (UTC µs) as the ISO timestamp a recipe could give for it."""
    return (_EPOCH + dt.timedelta(microseconds=int(us))).isoformat()


def split_points(
    cfg: OodConfig, starts: np.ndarray, ends: np.ndarray, source: RecipeSource
) -> dict[str, np.ndarray]:
    """{key: [S] µs} per series; checks id_start < train_end ≤ future_start where time passes."""
    points = {
        key: split_time_us(getattr(cfg, key), starts, ends, source, key) for key in SPLIT_KEYS
    }
    spans = ends > starts
    ordered = (points["id_start"] < points["train_end"]) & (
        points["train_end"] <= points["future_start"]
    )
    if not ordered[spans].all():
        _fail(source, "train_end", "split points must satisfy id_start < train_end ≤ future_start")
    # validation targets: the end of the training period, [val_start, id_start)
    train_span = np.maximum(points["id_start"] - starts, 0)
    points["val_start"] = points["id_start"] - np.round(cfg.val_fraction * train_span).astype(
        np.int64
    )
    return points
