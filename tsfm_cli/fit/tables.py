"""The fit results as tables: laws.parquet, curves.parquet (and the comparison/plan tables)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import polars as pl

from tsfm_cli.fit.analysis import Group, derived
from tsfm_cli.fit.fitting import LawFit, interval

CURVE_POINTS = 60


def _key_columns(g: Group) -> dict[str, Any]:
    keys = {"arch": "all", "scenario": "all", **g.keys}
    return {k: (v if k in ("horizon",) else str(v)) for k, v in keys.items()}


def _fit_columns(f: LawFit) -> dict[str, Any]:
    return {
        "r2_log": f.r2,
        "rmse_log": f.rmse,
        "n_points": f.n_points,
        "converged": f.converged,
        "note": f.note.strip().rstrip(";"),
        "space": f.space,
        "boot_ok": f.boot_ok,
        "extrap_x": f.extrap_x,
        "extrap_rel_err": f.extrap_rel_err,
        "rows": f.points.rule,
    }


def laws_frame(groups: list[Group], level: float, target_factor: float) -> pl.DataFrame:
    """One row per group × law × coefficient (a single row with the reason when not fitted)."""
    rows: list[dict[str, Any]] = []
    for g in groups:
        base = {**_key_columns(g), "kind": g.kind, "metric": g.metric}
        for f in g.fits:
            common = {**base, "x": f.x, "law": f.law, **_fit_columns(f)}
            if not f.ok:
                rows.append(
                    {
                        **common,
                        "coef": None,
                        "value": None,
                        "ci_low": None,
                        "ci_high": None,
                        "at": None,
                        "converged": False,
                    }
                )
                continue
            # the law's own coefficients, then the numbers derived from it
            entries = [(c, v, f.boot.get(c, np.array([])), None) for c, v in f.coefs.items()]
            entries += [
                (coef, value, samples, None if np.isnan(at) else at)
                for coef, (value, samples, at) in derived(f, target_factor).items()
            ]
            for coef, value, samples, at in entries:
                lo, hi = interval(samples, level)
                rows.append(
                    {**common, "coef": coef, "value": value, "ci_low": lo, "ci_high": hi, "at": at}
                )
    first = ["arch", "scenario", "metric", "x", "law", "coef", "value", "ci_low", "ci_high"]
    floats = ["value", "ci_low", "ci_high", "at", "r2_log", "rmse_log", "extrap_x"]
    floats += ["extrap_rel_err", "boot_ok"]
    frame = pl.DataFrame(rows, infer_schema_length=None).with_columns(
        pl.col(floats).cast(pl.Float64)
    )
    rest = [c for c in frame.columns if c not in first]
    return frame.select(first + rest)


def curve_grid(f: LawFit, target_factor: float) -> np.ndarray:
    lo, hi = f.points.X[0].min(), f.points.X[0].max() * max(target_factor, 1.0)
    return np.geomspace(lo / 1.5, hi, CURVE_POINTS)


def band(f: LawFit, grid: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise bootstrap interval of the fitted curve on `grid` (NaN without an interval)."""
    if not f.boot or np.isfinite(next(iter(f.boot.values()))).sum() < 10:
        return np.full(grid.size, np.nan), np.full(grid.size, np.nan)
    tail = 100 * (1 - level) / 2
    samples = f.predict(grid[None, :], boot=True)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanpercentile(samples, [tail, 100 - tail], axis=0)
    return lo, hi


def curves_frame(groups: list[Group], level: float, target_factor: float) -> pl.DataFrame:
    """Fitted curves with bootstrap bands for the one-input laws (for plotting)."""
    parts = []
    for g in groups:
        keys = {**_key_columns(g), "metric": g.metric}
        for f in g.fits:
            if not f.ok or f.law == "joint":
                continue
            grid = curve_grid(f, target_factor)
            loss = f.predict(grid[None, :])
            lo, hi = band(f, grid, level)
            cols = {k: [v] * grid.size for k, v in keys.items()}
            parts.append(
                pl.DataFrame(
                    {
                        **cols,
                        "x": [f.x] * grid.size,
                        "law": [f.law] * grid.size,
                        "x_value": grid,
                        "loss": loss,
                        "lo": lo,
                        "hi": hi,
                    }
                )
            )
    if not parts:
        return pl.DataFrame(
            schema={
                "metric": pl.String,
                "x": pl.String,
                "law": pl.String,
                "x_value": pl.Float64,
                "loss": pl.Float64,
                "lo": pl.Float64,
                "hi": pl.Float64,
            }
        )
    return pl.concat(parts, how="diagonal_relaxed")


def rows_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame()
