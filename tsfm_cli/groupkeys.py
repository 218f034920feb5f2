"""Results per group: ingest's group keys (line, machine, …) carried from eval.parquet to results.

ood-split copies each series' group keys into eval.parquet as String columns. Train (and the
baselines) report every scenario × horizon once over all its windows (`group_key` null, key
columns null) and, for each key that takes at least two values among those windows, once per
value: `group_key` names the key, that key's column holds the value, the other keys are null.
The metrics of a per-group row are the same per-window metrics averaged over that group's
windows only. `tsfm fit --group-by …,line` fits the per-line rows; a fit grouped by no key keeps
the all-window rows (`rows_for_grouping`).

A ground-floor module (polars and numpy only): train, the baselines and fit import it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

GROUP_KEY = "group_key"
# eval.parquet columns that are not group keys (ood-split's EVAL_SCHEMA and older layouts)
EVAL_NON_KEYS = frozenset(
    {
        "scenario",
        "split",
        "family",
        "kind",
        "severity",
        "horizon",
        "series_id",
        "sensor",
        "source",
        "freq_s",
        "window_id",
        "base_window_id",
        "target_start",
        "context",
        "context_observed",
        "target",
        "target_observed",
        GROUP_KEY,
    }
)


def eval_group_keys(frame: pl.DataFrame | pl.Schema | dict) -> list[str]:
    """The group-key columns of an eval.parquet frame (or schema): its other String columns."""
    schema = frame.schema if isinstance(frame, pl.DataFrame) else frame
    return [c for c, t in schema.items() if c not in EVAL_NON_KEYS and t == pl.String]


def finite_mean(values: np.ndarray) -> float | None:
    """The mean over finite per-window values (None when there is none), as train averages."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None


def breakdown(
    keys: dict[str, np.ndarray], per_window: dict[str, np.ndarray]
) -> list[dict[str, Any]]:
    """Per-group rows: {group_key, <key>: value, n_windows, <metric>: mean} for every key with
    at least two values among the windows. keys: name → [W] values; per_window: metric → [W]."""
    rows = []
    for key, values in keys.items():
        values = np.asarray(values, dtype=object)
        present = sorted({v for v in values.tolist() if v is not None})
        if len(present) < 2:
            continue  # one value: the all-window row already is that group's row
        for value in present:
            members = values == value
            row: dict[str, Any] = {GROUP_KEY: key, key: value, "n_windows": int(members.sum())}
            for metric, per in per_window.items():
                row[metric] = finite_mean(np.asarray(per, dtype=np.float64)[members])
            rows.append(row)
    return rows


def rows_for_grouping(frame: pl.DataFrame, group_by: list[str] | None) -> pl.DataFrame:
    """The rows a fit grouped by `group_by` uses: the per-group rows of the first grouping column
    that is a group key, else the all-window rows. Tables without `group_key` pass unchanged."""
    if GROUP_KEY not in frame.columns:
        return frame
    broken_down = set(frame[GROUP_KEY].drop_nulls().unique().to_list())
    key = next((c for c in group_by or [] if c in broken_down), None)
    return frame.filter(pl.col(GROUP_KEY).eq_missing(key))


def group_key_schema(rows: list[dict[str, Any]]) -> dict[str, pl.DataType]:
    """`group_key` and the key columns named by rows' group_key values, all String (empty when
    no row is a per-group row)."""
    keys = list(dict.fromkeys(r[GROUP_KEY] for r in rows if r.get(GROUP_KEY) is not None))
    return dict.fromkeys([GROUP_KEY, *keys], pl.String) if keys else {}


def all_window_rows(frame: pl.DataFrame) -> pl.DataFrame:
    """Only the rows over all windows of a scenario × horizon (no per-group rows)."""
    if GROUP_KEY not in frame.columns:
        return frame
    return frame.filter(pl.col(GROUP_KEY).is_null())
