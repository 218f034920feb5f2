"""Does the best model beat the baselines? Per horizon × scenario, on MASE and CRPS.

The best model is one run × checkpoint per horizon, chosen on validation rows (lowest
validation value of the first fitted metric; on the test rows themselves when there are no
validation rows); its test rows are compared with seasonal naive and the statistical baseline
(auto_ets, else any baseline other than the naive ones) on the same scenario and horizon.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from tsfm_cli.fit.roles import Roles

NAIVE = "seasonal_naive"
NAIVE_NAMES = ("seasonal_naive", "naive")
STATISTICAL = ("auto_ets",)
METRICS = ("mase", "crps")


def statistical_baseline(names: list[str]) -> str | None:
    for name in STATISTICAL:
        if name in names:
            return name
    others = sorted(n for n in names if n not in NAIVE_NAMES)
    return others[0] if others else None


def compare_baselines(roles: Roles, select_metric: str) -> list[dict[str, Any]]:
    """Rows: horizon, scenario, metric, model value, baseline, baseline value, beats."""
    base = roles.baselines
    if base.is_empty() or "model" not in base.columns:
        return []
    if "split" in base.columns:
        base = base.filter(pl.col("split").cast(pl.String) != "val")
    names = sorted(base["model"].drop_nulls().unique().to_list())
    against = [n for n in (NAIVE if NAIVE in names else None, statistical_baseline(names)) if n]
    metrics = [m for m in METRICS if m in roles.models.columns and m in base.columns]
    chooser = roles.val if roles.val is not None else roles.models
    if not against or not metrics or select_metric not in chooser.columns:
        return []
    by_h = "horizon" in roles.models.columns and "horizon" in base.columns
    rows = []
    horizons = sorted(roles.models["horizon"].unique().to_list()) if by_h else [None]
    for h in horizons:
        pick = chooser if h is None else chooser.filter(pl.col("horizon") == h)
        pick = pick.filter(pl.col(select_metric).is_finite())
        if pick.is_empty():
            continue
        best = pick.sort(select_metric).row(0, named=True)
        test = roles.models.filter(
            (pl.col("run_id") == best["run_id"]) & (pl.col("step") == best["step"])
        )
        b = base if h is None else base.filter(pl.col("horizon") == h)
        if h is not None:
            test = test.filter(pl.col("horizon") == h)
        for scen in sorted(test["scenario"].unique().to_list()):
            mine = test.filter(pl.col("scenario") == scen)
            theirs = b.filter(pl.col("scenario") == scen)
            for metric in metrics:
                value = mine[metric].mean()
                for name in against:
                    other = theirs.filter(pl.col("model") == name)[metric].mean()
                    if value is None or other is None:
                        continue
                    rows.append(
                        {
                            "horizon": h,
                            "scenario": str(scen),
                            "metric": metric,
                            "model_run": str(best["run_id"]),
                            "model_step": best["step"],
                            "model_value": float(value),
                            "baseline": name,
                            "baseline_value": float(other),
                            "beats": bool(value < other),
                        }
                    )
    return rows


def sentences(rows: list[dict[str, Any]], on_val: bool) -> list[str]:
    """One sentence per horizon: in how many scenarios the best model beats every baseline on
    every metric, and where it does not."""
    out = []
    for h in dict.fromkeys(r["horizon"] for r in rows):
        mine = [r for r in rows if r["horizon"] == h]
        scen = list(dict.fromkeys(r["scenario"] for r in mine))
        losses = [r for r in mine if not r["beats"]]
        lost_in = list(dict.fromkeys(r["scenario"] for r in losses))
        names = " and ".join(dict.fromkeys(r["baseline"] for r in mine))
        metrics = " and ".join(m.upper() for m in dict.fromkeys(r["metric"] for r in mine))
        where = "" if h is None else f"horizon {h}: "
        head = (
            f"{where}the best model (run {mine[0]['model_run']}, chosen on "
            f"{'validation' if on_val else 'the test rows: no validation rows'}) beats "
            f"{names} on {metrics} in {len(scen) - len(lost_in)} of {len(scen)} scenarios"
        )
        if losses:
            detail = []
            for sc in lost_in:
                lost = [r for r in losses if r["scenario"] == sc]
                names_lost = ", ".join(dict.fromkeys(r["baseline"] for r in lost))
                on = ", ".join(dict.fromkeys(r["metric"].upper() for r in lost))
                detail.append(f"{sc} ({names_lost} better on {on})")
            head += " — not in " + "; ".join(detail)
        out.append(head + ".")
    return out
