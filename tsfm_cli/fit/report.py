"""report.md: the answer in words a plant manager can read, with the evidence underneath."""

from __future__ import annotations

from typing import Any

import numpy as np

from tsfm_cli.fit import verdict
from tsfm_cli.fit.analysis import Group, is_id
from tsfm_cli.fit.config import FitConfig
from tsfm_cli.fit.fitting import interval
from tsfm_cli.schema import ID_SCENARIO

MAX_LINES = 8  # answers per question before the rest goes to the appendix (one screen)
CORRECTION_NAME = "Holm's method"


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
    """One screen of answers, then the appendix with every table behind them."""
    lines = ["# Scaling laws: what more size, data and compute buy", ""]
    lines += _answers(groups, comparisons, plan_rows, tradeoff, config, facts)
    lines += ["", "---", "", "# Appendix", ""]
    lines += _appendix(groups, comparisons, plan_rows, tradeoff, config, facts, images)
    return "\n".join(lines) + "\n"


def _answers(groups, comparisons, plan_rows, tradeoff, config, facts) -> list[str]:
    level = config.level
    out = ["## Answers", ""]
    out += [f"- **Warning:** {w}" for w in facts.get("warnings", [])]
    for b in facts.get("baselines", []):
        out.append(f"- **Beats the baselines?** {b['sentence']}")
    scale = verdict.scale_answers(groups, 10.0, level)
    for a in scale[:MAX_LINES]:
        out.append(f"- **Does scale pay?** {_scale_sentence(a)}")
    if len(scale) > MAX_LINES:
        out.append(f"- … {len(scale) - MAX_LINES} more groups in the appendix (A1).")
    if not scale:
        out.append("- **Does scale pay?** No law in N could be fitted in distribution (A5).")
    drift = verdict.drift_answers(comparisons)
    for d in drift[:MAX_LINES]:
        out.append(f"- **Survives {d['scenario']}?** {_drift_sentence(d)}")
    if len(drift) > MAX_LINES:
        out.append(f"- … {len(drift) - MAX_LINES} more drifted scenarios in the appendix (A2).")
    for note in facts.get("refused", []):
        out.append(f"- **Not fitted:** {note}")
    out += _invest(plan_rows, tradeoff)
    out.append(f"- **How sure?** {_how_sure(comparisons, config, facts)}")
    return out


WIDEST_STATED = 10.0  # a relative gain interval beyond ±1000% is described, not printed


def _scale_sentence(a: dict[str, Any]) -> str:
    what = "apparent (pure power law, no floor)" if a["law"] == "power" else "law with floor E"
    # a negative gain is a loss that rises with size: said as such, never "lowers by -7%"
    verb = "lowers" if not a["gain"] < 0 else "raises"
    sign = 1 if verb == "lowers" else -1
    if a["relative"]:
        size = f"{sign * a['gain'] * 100:.0f}%"
        low, high = sorted((sign * a["gain_low"], sign * a["gain_high"]))
        if not np.isfinite(a["gain_low"]):
            span = " (no interval)"
        elif max(abs(low), abs(high)) > WIDEST_STATED:
            # an exploding bootstrap (the law barely pinned down) is said, not printed in full
            widest = f"±{WIDEST_STATED * 100:.0f}%"
            span = f" (interval wider than {widest}: the data do not pin it down)"
        else:
            span = f" (between {low * 100:.0f}% and {high * 100:.0f}%)"
    else:
        size = f"{_num(sign * a['gain'])} (loss units)"
        low, high = sorted((sign * a["gain_low"], sign * a["gain_high"]))
        span = f" {_ci(low, high)}"
    verdict_word = "yes" if a["clear"] else "not clearly"
    return (
        f"{verdict_word} — {a['group']}: a {a['factor']:.0f}× bigger model than the largest tested "
        f"({_num(a['largest_N'])} parameters) {verb} {a['metric']} by about {size}{span}; {what}."
    )


def _drift_sentence(d: dict[str, Any]) -> str:
    floor = f"E higher in {d['floor_higher']}, lower in {d['floor_lower']} of {d['floor_tests']}"
    exps = (
        f"exponents smaller in {d['exponent_less']}, larger in {d['exponent_more']} of "
        f"{d['exponent_tests']}"
    )
    head = {
        "floor moved": "yes — the floor moved, not the scaling (more scale helps as in "
        "distribution but cannot remove the added loss)",
        "scaling differs": "the scaling differs: more scale helps differently here",
        "untested": "cannot tell: no law with a floor was compared",
        "no clear change": "yes — no clear change from in distribution",
    }[d["verdict"]]
    return f"{head}; {d['metric']}: {floor}, {exps} tests clear (A2)."


def _invest(plan_rows, tradeoff) -> list[str]:
    if not plan_rows and not tradeoff:
        return [
            "- **Where to invest?** No budget asked: pass `--budget-flops` or `--target-loss` "
            "for the compute-optimal model from the joint law (answered only inside the tested "
            "range, `--max-extrapolation`)."
        ]
    out = []
    for r in plan_rows:
        if r.get("scenario") != ID_SCENARIO:
            continue
        if r.get("status", "ok") != "ok" or "N_opt" not in r:
            out.append(
                f"- **Where to invest?** {r['group']}: no plan — {r.get('reason') or r.get('note')}"
                " (the extrapolated numbers are in A4, marked as extrapolation)."
            )
            continue
        out.append(
            f"- **Where to invest?** {r['group']} ({r['metric']}): with {_num(r['budget_flops'])} "
            f"FLOPs train about {_num(r['N_opt'])} parameters on {_num(r['D_opt'])} data points; "
            f"expected loss {_num(r['loss'])} {_ci(r['loss_low'], r['loss_high'])} in "
            f"distribution. {r.get('tested_range', '')}".rstrip()
        )
    for r in tradeoff[:MAX_LINES]:
        head = f"- **Clean the data or a bigger model?** {r['group']} ({r.get('train_quality')}): "
        if r.get("status", "ok") != "ok":
            out.append(f"{head}no answer — the model option is outside the runs: {r['reason']}.")
            continue
        out.append(
            f"{head}{r['better']} (gain from cleaning {_num(r['gain_cleaning'])}, from the model "
            f"{_num(r['gain_model'])})."
        )
    return out


def _how_sure(comparisons, config, facts) -> str:
    fams = sorted({(c["comparison"], c.get("family_size", 0)) for c in comparisons})
    tests = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in fams) or "none"
    sizes = facts.get("distinct_sizes", 0)
    extrap = (
        "the extrapolation check (refit without the largest run) ran"
        if sizes >= 4
        else f"only {sizes} model sizes: the extrapolation check needs ≥ 4 and did not run"
    )
    return (
        f"{config.level:.0%} intervals from {facts.get('bootstrap', 'a bootstrap over runs')} "
        f"({config.n_boot} resamples); tests corrected by {CORRECTION_NAME} within each family "
        f"({tests} tests); {extrap}."
    )


def _appendix(groups, comparisons, plan_rows, tradeoff, config, facts, images) -> list[str]:
    law, level = config.headline_law, config.level
    lines = []
    if facts.get("baseline_rows"):
        lines += [
            "## A0. Best model vs baselines (test rows)",
            "",
            "| horizon | scenario | metric | best model | value | baseline | value | beats? |",
            "|---|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['horizon'] if r['horizon'] is not None else '–'} | {r['scenario']} | "
            f"{r['metric']} | {r['model_run']} @ {r['model_step']} | {_num(r['model_value'])} | "
            f"{r['baseline']} | {_num(r['baseline_value'])} | {'yes' if r['beats'] else 'no'} |"
            for r in facts["baseline_rows"]
        ]
        lines.append("")
    lines += ["## A1. Exponents in distribution", ""]
    apparent = ", whose α is only an *apparent slope*: a higher floor lowers it"
    lines += [
        f"Per doubling of model size, data or compute ({law} law"
        + (apparent if law == "power" else "")
        + "); α and its interval in brackets.",
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
            "Caution — refitted without the largest run, these laws missed it by more than 10%: "
            + "; ".join(shaky)
            + ".",
        ]
    lines += ["", "## A2. Drift vs in distribution", ""]
    ood = [c for c in comparisons if c["comparison"] == "ood_vs_id"]
    if ood:
        lines += [
            "Difference OOD − ID of the floor E and of the exponents (laws with a floor), and of "
            "the pure power law's apparent slope (never read as a change of scaling). p adjusted "
            f"by {CORRECTION_NAME} over all {ood[0].get('family_size', len(ood))} drift tests.",
            "",
            "| group | drift | metric | X | law | quantity | OOD | ID | difference | interval "
            "| p adj. | clear? |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        lines += [_comparison_row(c) for c in ood]
    else:
        lines.append("No OOD scenario with a matching ID group was fitted.")
    arch_rows = [c for c in comparisons if c["comparison"] == "arch_vs_arch"]
    if arch_rows:
        lines += [
            "",
            "## A3. Architectures compared",
            "",
            "| group | A | metric | X | law | quantity | A | B | difference | interval "
            "| p adj. | clear? |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        lines += [_comparison_row(c) for c in arch_rows]
    if plan_rows:
        lines += _plan_table(plan_rows, config)
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
        "## A5. How good are the fits",
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
    lines += ["", "## A6. Data notes", ""]
    lines += [f"- {n} rows left out: {reason}." for reason, n in facts.get("dropped", {}).items()]
    lines.append(
        f"- Fitted {facts['rows']} result rows from {facts['runs']} runs in {len(groups)} groups "
        f"(grouped by {', '.join(facts['group_by']) or 'nothing'}); metric(s): "
        f"{', '.join(config.metrics)} (lower is better)."
    )
    lines.append(
        f"- Non-finite losses: {facts['nonfinite']}; losses ≤ 0: {facts['nonpositive']} "
        "(the pure power law refuses a group that has any)."
    )
    lines.append(
        f"- Rows per law: L(N) {config.n_rows}, L(D) {config.d_rows}, L(C) "
        f"{config.c_rows}, checkpoint {config.checkpoint}."
    )
    lines += [f"- {n}" for n in facts.get("notes", [])]
    if images:
        lines += ["", "## A7. Plots", ""] + [f"![{name}]({name})" for name in images]
    return lines


def _comparison_row(c: dict[str, Any]) -> str:
    return (
        f"| {c['group']} | {c['label_a']} | {c['metric']} | {c['x']} | {c['law']} | "
        f"{c['quantity']} ({c['coef']}) | {_num(c['value_a'])} | {_num(c['value_b'])} | "
        f"{_num(c['diff'])} | {_ci(c['ci_low'], c['ci_high'])} | {_p(c['p_adjusted'])} | "
        f"{_clear(c)} |"
    )


def _plan_table(plan_rows, config) -> list[str]:
    lines = ["", "## A4. Plan", ""]
    if config.budget_flops is not None:
        lines.append(f"Budget: {config.budget_flops:.3g} FLOPs.")
    else:
        lines.append(f"Target ID loss: {config.target_loss:.4g}.")
    lines += [
        "",
        "Compute-optimal allocation from the joint law L(N, D); C ≈ 6·k·N·D with k "
        f"= {_num(plan_rows[0].get('flops_per_6nd', 1.0))} measured from the runs. Rows marked "
        "**extrapolation** lie outside the tested range and are not a recommendation.",
        "",
        "| group | scenario | budget (FLOPs) | N_opt | D_opt | predicted loss | status |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in plan_rows:
        if "N_opt" not in r:
            lines.append(
                f"| {r['group']} | {r['scenario']} | – | – | – | – | {r.get('note', '')} |"
            )
            continue
        status = r.get("status", "ok")
        mark = f"**extrapolation**: {r.get('reason', '')}" if status != "ok" else "inside"
        lines.append(
            f"| {r['group']} · {r['metric']} | {r['scenario']} | {_num(r['budget_flops'])} | "
            f"{_num(r['N_opt'])} {_ci(r['N_opt_low'], r['N_opt_high'])} | "
            f"{_num(r['D_opt'])} {_ci(r['D_opt_low'], r['D_opt_high'])} | "
            f"{_num(r['loss'])} {_ci(r['loss_low'], r['loss_high'])} | {mark} |"
        )
    ranges = sorted({r["tested_range"] for r in plan_rows if r.get("tested_range")})
    lines += [""] + ranges if ranges else []
    return lines


def _p(v: float) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{v:.2g}"


def _clear(c: dict[str, Any]) -> str:
    """The corrected verdict ("–" when there is no test: no interval)."""
    if not np.isfinite(c.get("p_adjusted", float("nan"))):
        return "–"
    return "yes" if c["clear"] else "no"


def _pct(v: float) -> str:
    return f"{v * 100:+.1f}%" if v is not None and np.isfinite(v) else "–"
