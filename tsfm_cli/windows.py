"""eval.parquet's window rows → arrays: one reader for the models' evaluation and the baselines,
so both see exactly the same values and masks. A ground-floor module (polars and numpy only)."""

from __future__ import annotations

import numpy as np
import polars as pl


def list_array(column: pl.Series, dtype, fill) -> np.ndarray:
    """A list column of equal-length lists → [rows, width] array, nulls set to `fill`
    (through polars' fixed-width arrays: no Python object per element)."""
    filled = column.list.eval(pl.element().fill_null(fill))
    return filled.list.to_array(filled.list.len().max()).to_numpy().astype(dtype)


def window_arrays(part: pl.DataFrame, dtype=np.float32):
    """(context [n, Tc], target [n, H], context_observed, target_observed) of eval.parquet rows;
    values NaN where not observed, a mask False where its value is missing or not finite."""
    context = list_array(part["context"], dtype, float("nan"))
    target = list_array(part["target"], dtype, float("nan"))
    c_obs = list_array(part["context_observed"], bool, False) & np.isfinite(context)
    t_obs = list_array(part["target_observed"], bool, False) & np.isfinite(target)
    return context, target, c_obs, t_obs
