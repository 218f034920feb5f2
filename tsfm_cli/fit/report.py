"""report.md: the answer in words a plant manager can read, with the evidence underneath."""

from __future__ import annotations

from typing import Any

import numpy as np

from tsfm_cli.fit.analysis import Group, is_id
from tsfm_cli.fit.config import FitConfig
from tsfm_cli.fit.fitting import interval
from tsfm_cli.schema import ID_SCENARIO


def _num(v: float, digits: int = 3) -> str:
    if v is None or not np.isfinite(v):
        return "–"
    return f"{v:.{digits}g}"


def _ci(lo: float, hi: float) -> str:
    return f"[{_num(lo)}, {_num(hi)}]" if np.isfinite(lo) and np.isfinite(hi) else "[–]"


def _doubling(alpha: float) -> str:
    """What α means: the signed % change of the loss when X doubles (pure power law)."""
    change = (2 ** (-alpha) - 1) * 100
    return f"{'−' if change < 0 else '+'}{abs(change):.1f}%"


def render(
    groups: list[Group],
    comparisons: list[dict[str, Any]],
    plan_rows: list[dict[str, Any]],
    tradeoff: list[dict[str, Any]],
    config: FitConfig,
    facts: dict[str, Any],
    images: list[str],
) -> str:
    law, level = config.headline_law, config.level
    lines = ["# Scaling laws: what more size, data and compute buy", ""]
    lines += [
        f"Fitted {facts['rows']} result rows from {facts['runs']} runs in {len(groups)} groups "
        f"(grouped by {', '.join(facts['group_by']) or 'nothing'}); metric(s): "
        f"{', '.join(config.metrics)} (lower is better). Intervals are {level:.0%} bootstrap "
        f"intervals over runs ({config.n_boot} resamples).",
        "",
        "## In short",
        "",
        *_in_short(groups, comparisons, plan_rows, config),
        "",
        "## Headline (in-distribution)",
        "",
    ]
    lines += [
        "How much the loss falls each time the model size, the training data or the training "
        f"compute doubles ({law} law; α and its interval in brackets). An interval that "
        "includes 0 means the data cannot tell whether it helps at all.",
        "",
        "| group | metric | model size ×2 | data ×2 | compute ×2 |",
        "|---|---|---|---|---|",
    ]
    shaky = []
    for g in groups:
        if not is_id(g):
            continue
        cells = []
        for x in ("N", "D", "C"):
            f = g.get(x, law)
            if f is None:
                cells.append("–")
                continue
            a = f.coefs["alpha"]
            lo, hi = interval(f.boot["alpha"], level)
            cells.append(f"{_doubling(a)} (α {_num(a)} {_ci(lo, hi)})")
            if np.isfinite(f.extrap_rel_err) and abs(f.extrap_rel_err) > 0.1:
                shaky.append(f"{g.label(('scenario',))} L({x}): {_pct(f.extrap_rel_err)}")
        lines.append(f"| {g.label(('scenario',))} | {g.metric} | " + " | ".join(cells) + " |")
    if shaky:
        lines += [
            "",
            "Caution — refitted without the largest run, these laws missed it by more than 10%, "
            "so do not extrapolate them far: " + "; ".join(shaky) + ".",
        ]
    lines += ["", "## When the plant drifts (OOD vs ID)", ""]
    ood = [c for c in comparisons if c["comparison"] == "ood_vs_id" and c["law"] == law]
    if ood:
        lines += [
            "A negative difference means size/data/compute helps *less* under that drift.",
            "",
            "| group | X | α OOD | α ID | difference | interval | clear? |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in ood:
            lines.append(
                f"| {c['group']} · {c['label_a']} · {c['metric']} | {c['x']} | "
                f"{_num(c['value_a'])} | {_num(c['value_b'])} | {_num(c['diff'])} | "
                f"{_ci(c['ci_low'], c['ci_high'])} | {_clear(c)} |"
            )
    else:
        lines.append("No OOD scenario with a matching ID group was fitted.")
    arch_rows = [c for c in comparisons if c["comparison"] == "arch_vs_arch" and c["law"] == law]
    if arch_rows:
        lines += [
            "",
            "## Architectures compared",
            "",
            "| group | X | A | α A | B | α B | difference | interval | clear? |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for c in arch_rows:
            lines.append(
                f"| {c['group']} · {c['metric']} | {c['x']} | {c['label_a']} | "
                f"{_num(c['value_a'])} | {c['vs']} | {_num(c['value_b'])} | {_num(c['diff'])} | "
                f"{_ci(c['ci_low'], c['ci_high'])} | {_clear(c)} |"
            )
    if plan_rows:
        lines += ["", "## Plan", ""]
        if config.budget_flops is not None:
            lines.append(f"Budget: {config.budget_flops:.3g} FLOPs.")
        else:
            lines.append(f"Target ID loss: {config.target_loss:.4g}.")
        lines += [
            "",
            "Compute-optimal allocation from the joint law L(N, D); C ≈ 6·k·N·D with k "
            f"= {_num(plan_rows[0].get('flops_per_6nd', 1.0))} measured from the runs.",
            "",
            "| group | scenario | budget (FLOPs) | N_opt | D_opt | predicted loss | interval |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in plan_rows:
            if "N_opt" not in r:
                lines.append(
                    f"| {r['group']} | {r['scenario']} | – | – | – | – | {r.get('note', '')} |"
                )
                continue
            lines.append(
                f"| {r['group']} · {r['metric']} | {r['scenario']} | "
                f"{_num(r['budget_flops'])} | "
                f"{_num(r['N_opt'])} {_ci(r['N_opt_low'], r['N_opt_high'])} | "
                f"{_num(r['D_opt'])} {_ci(r['D_opt_low'], r['D_opt_high'])} | "
                f"{_num(r['loss'])} | {_ci(r['loss_low'], r['loss_high'])} |"
            )
    if tradeoff:
        lines += [
            "",
            "## Clean the data or buy a bigger model?",
            "",
            "Loss gained (ID) from today's largest run by cleaning the training data to the next "
            "quality level (same model) versus by training the compute-optimal model on today's "
            "data at the same budget.",
            "",
            "| data quality now | cleaned to | loss now | gain from cleaning | gain from model "
            "| better |",
            "|---|---|---|---|---|---|",
        ]
        for r in tradeoff:
            lines.append(
                f"| {r.get('train_quality')} ({r['group']}) | {r['next_level']} | "
                f"{_num(r['loss_now'])} | {_num(r['gain_cleaning'])} "
                f"{_ci(r['gain_cleaning_low'], r['gain_cleaning_high'])} | "
                f"{_num(r['gain_model'])} {_ci(r['gain_model_low'], r['gain_model_high'])} | "
                f"{r['better']} |"
            )
    lines += [
        "",
        "## How good are the fits",
        "",
        "R² and RMSE in log space (loss space where losses are not all positive); the "
        "extrapolation error is the law fitted without the largest X, predicting it.",
        "",
        "| group | X | law | points | R² | RMSE | extrapolation | converged | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for g in groups:
        for f in g.fits:
            lines.append(
                f"| {g.label()} · {g.metric} | {f.x} | {f.law} | {f.n_points} | {_num(f.r2)} | "
                f"{_num(f.rmse)} | {_pct(f.extrap_rel_err)} | {'yes' if f.converged else 'no'} | "
                f"{f.note.strip().rstrip(';')} |"
            )
    lines += ["", "## Data notes", ""]
    for reason, n in facts.get("dropped", {}).items():
        lines.append(f"- {n} rows left out: {reason}.")
    lines.append(
        f"- Non-finite losses: {facts['nonfinite']}; non-positive losses: "
        f"{facts['nonpositive']} (left out of the pure power law only)."
    )
    lines.append(
        f"- Rows per law: L(N) {config.n_rows}, L(D) {config.d_rows}, L(C) "
        f"{config.c_rows}, checkpoint {config.checkpoint}."
    )
    if images:
        lines += ["", "## Plots", ""] + [f"![{name}]({name})" for name in images]
    return "\n".join(lines) + "\n"


def _in_short(
    groups: list[Group],
    comparisons: list[dict[str, Any]],
    plan_rows: list[dict[str, Any]],
    config: FitConfig,
) -> list[str]:
    """A few plain sentences: what a 10× bigger model buys, drift, the plan."""
    law, level = config.headline_law, config.level
    out = []
    for g in groups:
        f = g.get("N", law)
        if f is None or not is_id(g):
            continue
        a = f.coefs["alpha"]
        lo, hi = interval(f.boot["alpha"], level)
        gain = (1 - 10 ** (-a)) * 100
        if np.isfinite(lo):
            span = f" (between {(1 - 10 ** (-lo)) * 100:.0f}% and {(1 - 10 ** (-hi)) * 100:.0f}%)"
        else:
            span = " (no interval)"
        verb = "lowers" if gain >= 0 else "raises"
        out.append(
            f"- {g.label(('scenario',))}: a 10× bigger model {verb} {g.metric} by about "
            f"{abs(gain):.0f}%{span}."
        )
    ood = [c for c in comparisons if c["comparison"] == "ood_vs_id" and c["law"] == law]
    ood = [c for c in ood if c["x"] == "N"]
    if ood:
        less = sum(1 for c in ood if c["excludes_zero"] and c["diff"] < 0)
        more = sum(1 for c in ood if c["excludes_zero"] and c["diff"] > 0)
        out.append(
            f"- Under drift: in {less} of {len(ood)} drifted scenario groups a bigger model helps "
            f"clearly less than in distribution, in {more} clearly more; in the rest the data "
            "cannot tell."
        )
    for r in plan_rows:
        if r["scenario"] != ID_SCENARIO or "N_opt" not in r:
            continue
        worst = [
            p["loss"]
            for p in plan_rows
            if p["group"] == r["group"]
            and p["metric"] == r["metric"]
            and p["scenario"] != ID_SCENARIO
            and "loss" in p
        ]
        drift = f"; under drift up to {_num(max(worst))}" if worst else ""
        out.append(
            f"- Plan for {r['group']} ({r['metric']}): with "
            f"{_num(r['budget_flops'])} FLOPs train about {_num(r['N_opt'])} parameters on "
            f"{_num(r['D_opt'])} data points; expected loss {_num(r['loss'])} "
            f"{_ci(r['loss_low'], r['loss_high'])} in distribution{drift}."
        )
    return out or ["- No law in N could be fitted (see the notes below)."]


def _clear(c: dict[str, Any]) -> str:
    """Does the interval of a difference exclude zero ("–" when there is no interval)?"""
    if not np.isfinite(c["ci_low"]):
        return "–"
    return "yes" if c["excludes_zero"] else "no"


def _pct(v: float) -> str:
    return f"{v * 100:+.1f}%" if v is not None and np.isfinite(v) else "–"
