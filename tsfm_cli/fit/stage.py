"""`run_fit`: results folders/files in, laws/ out (DESIGN §1, §4)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import polars as pl

from tsfm_cli.errors import BadInputError, TsfmError
from tsfm_cli.fit import analysis, plots, report, tables, versus_baselines
from tsfm_cli.fit.config import FitConfig
from tsfm_cli.fit.fitting import NONPOSITIVE_HINT, interval
from tsfm_cli.fit.load import WINDOWS_FILE, read_results
from tsfm_cli.fit.roles import split_roles
from tsfm_cli.groupkeys import rows_for_grouping
from tsfm_cli.recipe import config_dict
from tsfm_cli.stagedir import StageWriter, claim_output, fingerprint, reuse_summary
from tsfm_cli.ui import Reporter

STAGE = "fit"


def run_fit(
    inputs: list[Path] | Path,
    out_dir: Path,
    config: FitConfig | None = None,
    *,
    reporter: Reporter | None = None,
    command: list[str] | None = None,
    wait_s: float = 0.0,
) -> dict[str, Any]:
    """Fit the scaling laws of every group and write laws/; returns the summary."""
    config = config or FitConfig()
    config.check()
    reporter = reporter or Reporter()
    paths = [Path(p) for p in ([inputs] if isinstance(inputs, (str, Path)) else inputs)]
    out_dir = Path(out_dir)
    claim_output(out_dir, STAGE, paths)
    loaded = read_results(paths, config.metrics)
    require_finite(loaded.frame, config.metrics, paths[0])
    cfg = config_dict(config)
    fp = fingerprint(cfg, loaded.inputs)
    reused = reuse_summary(out_dir, STAGE, fp, reporter)
    if reused is not None:
        return reused
    # per-line rows only when the grouping asks for a group key (tsfm_cli/groupkeys.py)
    roles = split_roles(rows_for_grouping(loaded.frame, config.group_by))
    frame = roles.models
    if frame.is_empty():
        raise BadInputError(f"{paths[0]}: only baseline rows; no trained model to fit laws to")
    specs = analysis.law_specs(frame, config)
    if not specs:
        raise BadInputError(
            f"{paths[0]}: no law can be fitted with fit.xs={config.xs}, "
            f"fit.laws={config.laws} and the columns present"
        )
    cols = analysis.group_columns(frame, config)
    n_groups = frame.select(cols).unique().height if cols else 1
    with reporter.progress("fitting laws", n_groups * len(specs) * len(config.metrics)) as task:
        groups = analysis.fit_groups(frame, config, progress=task, val=roles.val)
    baseline_rows = versus_baselines.compare_baselines(roles, config.metrics[0])
    comparisons = analysis.compare(groups, config.level)
    plan_rows = analysis.plan(groups, frame, config)
    tradeoff = analysis.quality_tradeoff(groups, frame, config)
    laws = tables.laws_frame(groups, config.level, config.target_factor)
    curves = tables.curves_frame(groups, config.level, config.target_factor)

    fitted = [f for g in groups for f in g.fits if f.ok]
    not_fitted = [
        {"group": g.label(), "metric": g.metric, "x": f.x, "law": f.law, "why": f.note.strip()}
        for g in groups
        for f in g.fits
        if not f.ok
    ]
    facts = {
        "rows": frame.height,
        "runs": frame["run_id"].n_unique(),
        "group_by": cols,
        "dropped": loaded.dropped,
        "nonfinite": sum(g.n_nonfinite for g in groups),
        "nonpositive": sum(g.n_nonpositive for g in groups),
        "refused": _refused(groups),
        "distinct_sizes": frame["params"].n_unique() if "params" in frame.columns else 0,
        "bootstrap": _bootstrap_words(loaded),
        "warnings": list(roles.warnings) + _seed_warning(loaded),
        "baselines": _baseline_answers(baseline_rows, roles),
        "baseline_rows": baseline_rows,
        "notes": [],
    }
    summary: dict[str, Any] = {
        "out_dir": str(out_dir),
        "rows": facts["rows"],
        "runs": facts["runs"],
        "groups": len(groups),
        "group_by": cols,
        "metrics": list(config.metrics),
        "laws_fitted": len(fitted),
        "laws_not_fitted": len(not_fitted),
        "not_fitted": not_fitted,
        "not_converged": sum(1 for f in fitted if not f.converged),
        "rows_left_out": loaded.dropped,
        "nonfinite_losses": facts["nonfinite"],
        "nonpositive_losses": facts["nonpositive"],
        "exponents": _headline(groups, config),
        "differences_excluding_zero": sum(1 for c in comparisons if c["excludes_zero"]),
        "clear_differences": sum(1 for c in comparisons if c["clear"]),
        "correction": "holm",
        "plan": plan_rows,
        "quality_tradeoff": tradeoff,
        "baselines": baseline_rows,
        "selection": "validation rows" if roles.val is not None else "test rows (no validation)",
        "bootstrap": facts["bootstrap"],
        "seeds_per_configuration": loaded.seeds,
        "window_rows": loaded.windows,
    }
    summary = _finite(summary)
    with StageWriter(out_dir, STAGE, cfg, loaded.inputs, command=command, wait_s=wait_s) as w:
        w.write_parquet("laws.parquet", laws)
        w.write_parquet("curves.parquet", curves)
        if comparisons:
            w.write_parquet("comparisons.parquet", tables.rows_frame(comparisons))
        if plan_rows:
            w.write_parquet("plan.parquet", tables.rows_frame(plan_rows))
        if baseline_rows:
            w.write_parquet("baselines.parquet", tables.rows_frame(baseline_rows))
        if tradeoff:
            w.write_parquet("tradeoff.parquet", tables.rows_frame(tradeoff))
        images: list[str] = []
        if config.plots:
            law = config.headline_law
            images += plots.loss_plots(groups, w.dir, law, config.level, config.target_factor)
            images += plots.forest_plot(groups, w.dir, law, config.level)
            images += plots.horizon_plot(groups, w.dir, law, config.level)
            for name in images:
                w.register(name)
        text = report.render(groups, comparisons, plan_rows, tradeoff, config, facts, images)
        (w.dir / "report.md").write_text(text, encoding="utf-8")
        w.register("report.md")
        summary["files"] = sorted(w.outputs) + ["manifest.json"]
        w.commit(summary=summary)
    return {**summary, "skipped": False}


def require_finite(frame: pl.DataFrame, metrics: list[str], where: Path) -> None:
    """A metric without one finite value (every run diverged, or it was never computed) leaves
    nothing to fit: that is a failed experiment (exit 1), not a report of empty laws."""
    if frame.height == 0:
        return
    for metric in metrics:
        finite = frame[metric].cast(pl.Float64, strict=False).is_finite().fill_null(False)
        if not finite.any():
            raise TsfmError(
                f"{where}: every {metric} value ({frame.height} rows) is NaN, infinite or "
                "missing; nothing to fit (did every run diverge?)"
            )


def _headline(groups: list[analysis.Group], config: FitConfig) -> list[dict[str, Any]]:
    """α with interval of the headline law per group and X (what the terminal table shows)."""
    out = []
    for g in groups:
        for f in g.fits:
            if f.law != config.headline_law:
                continue
            row = {
                **{k: (v if k == "horizon" else str(v)) for k, v in g.keys.items()},
                "metric": g.metric,
                "x": f.x,
                "n_points": f.n_points,
            }
            if f.ok:
                lo, hi = interval(f.boot["alpha"], config.level)
                row.update(
                    alpha=f.coefs["alpha"],
                    ci_low=lo,
                    ci_high=hi,
                    r2_log=f.r2,
                    extrap_rel_err=f.extrap_rel_err,
                )
            row["note"] = f.note.strip().rstrip(";")
            out.append(row)
    return out


def _bootstrap_words(loaded) -> str:
    seeds = "configurations, then seeds within each" if loaded.seeds > 1 else "runs"
    if loaded.windows:
        return (
            f"a hierarchical bootstrap over {seeds} and the evaluation windows of each run "
            f"({loaded.windows} window rows; the window level drawn from the standard error of "
            "each run's mean, windows clustered by series)"
        )
    return (
        f"a bootstrap over {seeds} only (no {WINDOWS_FILE} next to the results: evaluation-window "
        "noise is not in the intervals)"
    )


def _seed_warning(loaded) -> list[str]:
    if loaded.seeds > 1:
        return []
    return [
        "one seed per configuration: the intervals do not include seed-to-seed training noise; "
        "run ≥ 2 seeds where a claim rests on an interval"
    ]


def _baseline_answers(rows: list[dict[str, Any]], roles) -> list[dict[str, str]]:
    if not rows:
        why = (
            'no baseline rows (arch "baseline") in the results'
            if roles.baselines.is_empty()
            else "the baseline rows share no scenario, horizon and metric (MASE, CRPS) with runs"
        )
        return [{"sentence": f"cannot tell: {why}, so nothing says a model beats seasonal naive."}]
    on_val = roles.val is not None
    return [{"sentence": s} for s in versus_baselines.sentences(rows, on_val)]


def _refused(groups: list[analysis.Group]) -> list[str]:
    """One line per metric whose pure power law was refused (losses ≤ 0), never silently."""
    out = []
    for metric in dict.fromkeys(g.metric for g in groups):
        n = sum(
            1
            for g in groups
            if g.metric == metric
            for f in g.fits
            if f.law == "power" and f.refused_nonpositive
        )
        if n:
            out.append(
                f"the pure power law of {metric} was refused in {n} law(s): {metric} has losses "
                f"≤ 0 (scaled NLL can be negative) — {NONPOSITIVE_HINT}."
            )
    return out


def _finite(value: Any) -> Any:
    """NaN/inf → None, so that `--json` and the manifest stay strict JSON (for jq and friends)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        return _finite(value.item())
    return value
