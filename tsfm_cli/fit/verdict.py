"""The answers of the report as data: does scale pay, does it survive each drift.

Each function turns fitted groups and (corrected) comparisons into small dicts that report.md
renders as sentences and the tests check; nothing here formats text for a table.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tsfm_cli.fit.analysis import Group, is_id
from tsfm_cli.fit.fitting import LawFit, interval


def scale_law(g: Group) -> LawFit | None:
    """The law in N a "bigger model" answer rests on: the E-form (it knows the floor), else the
    pure power law (then labelled "apparent")."""
    return g.get("N", "power_e") or g.get("N", "power")


def scale_gain(g: Group, factor: float, level: float) -> dict[str, Any] | None:
    """Loss gained by a `factor`× bigger model than the largest tested, with its interval.

    Relative (share of the loss at the largest N) when every loss is positive, else in loss units.
    """
    f = scale_law(g)
    if f is None:
        return None
    top = float(f.points.X[0].max())
    at = np.array([[top, top * factor]])
    now, then = f.predict(at)
    relative = bool(np.all(f.points.y > 0))
    gain = (now - then) / now if relative else now - then
    lo = hi = float("nan")
    if f.boot:
        b = f.predict(at, boot=True)
        with np.errstate(all="ignore"):
            samples = (b[:, 0] - b[:, 1]) / b[:, 0] if relative else b[:, 0] - b[:, 1]
        lo, hi = interval(samples, level)
    return {
        "group": g.label(("scenario",), named=True),
        "metric": g.metric,
        "law": f.law,
        "largest_N": top,
        "factor": factor,
        "gain": float(gain),
        "gain_low": lo,
        "gain_high": hi,
        "relative": relative,
        "clear": bool(np.isfinite(lo) and lo > 0),
    }


def scale_answers(groups: list[Group], factor: float, level: float) -> list[dict[str, Any]]:
    return [a for g in groups if is_id(g) for a in [scale_gain(g, factor, level)] if a]


def drift_answers(comparisons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per drifted scenario × metric: how many floor and exponent tests are clear (corrected),
    and in which direction, and the verdict in one word."""
    ood = [c for c in comparisons if c["comparison"] == "ood_vs_id"]
    keys = sorted({(c["label_a"], c["metric"]) for c in ood})
    out = []
    for scenario, metric in keys:
        rows = [c for c in ood if c["label_a"] == scenario and c["metric"] == metric]

        def count(quantity: str, sign: int, rows=rows) -> int:
            return sum(
                1 for c in rows if c["quantity"] == quantity and c["clear"] and sign * c["diff"] > 0
            )

        def total(quantity: str, rows=rows) -> int:
            tested = [c for c in rows if c["quantity"] == quantity]
            return sum(1 for c in tested if np.isfinite(c["p_adjusted"]))

        floor_up, floor_down = count("floor", 1), count("floor", -1)
        exp_less, exp_more = count("exponent", -1), count("exponent", 1)
        floor_moved = floor_up + floor_down > 0
        scaling_moved = exp_less + exp_more > 0
        if scaling_moved:
            verdict = "scaling differs"
        elif floor_moved:
            verdict = "floor moved"
        elif total("floor") + total("exponent") == 0:
            verdict = "untested"
        else:
            verdict = "no clear change"
        out.append(
            {
                "scenario": scenario,
                "metric": metric,
                "floor_tests": total("floor"),
                "floor_higher": floor_up,
                "floor_lower": floor_down,
                "exponent_tests": total("exponent"),
                "exponent_less": exp_less,
                "exponent_more": exp_more,
                "apparent_tests": total("apparent slope"),
                "apparent_clear": count("apparent slope", 1) + count("apparent slope", -1),
                "verdict": verdict,
            }
        )
    return out
