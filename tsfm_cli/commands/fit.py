"""`tsfm fit`: scaling laws with uncertainty from one or more results folders or files."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from tsfm_cli.commands.common import (
    ConfigOpt,
    DebugOpt,
    JsonOpt,
    QuietOpt,
    SeedOpt,
    WaitOpt,
    comma_list,
    run_stage,
)


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _ci(row: dict[str, Any], prefix: str = "ci") -> str:
    lo, hi = row.get(f"{prefix}_low"), row.get(f"{prefix}_high")
    return f"[{_fmt(lo)}, {_fmt(hi)}]"


def render(summary: dict[str, Any], reporter) -> None:
    from rich.table import Table

    if summary.get("skipped"):
        reporter.info(f"nothing to redo: {summary['out_dir']} is up to date")
        return
    keys = summary.get("group_by", [])
    table = Table(
        title="Scaling exponents α (headline law; the pure power law's α is an apparent slope) "
        "with intervals — answers in report.md"
    )
    for col in [*keys, "metric", "X", "α", "interval", "R² (log)", "extrap."]:
        table.add_column(col)
    table.add_column("note", overflow="ellipsis", no_wrap=True, max_width=24)
    for r in summary.get("exponents", []):
        err = r.get("extrap_rel_err")
        table.add_row(
            *[str(r.get(k, "")) for k in keys],
            r["metric"],
            r["x"],
            _fmt(r.get("alpha")),
            _ci(r) if "alpha" in r else "",
            _fmt(r.get("r2_log")),
            f"{err * 100:+.1f}%" if isinstance(err, float) and math.isfinite(err) else "–",
            r.get("note", ""),
        )
    reporter.show(table)
    if summary.get("plan"):
        plan = Table(title="Plan: compute-optimal model from the joint law")
        for col in ["group", "scenario", "budget", "N_opt", "D_opt", "predicted loss", "status"]:
            plan.add_column(col)
        for r in summary["plan"]:
            group = " ".join(str(r.get(k, "")) for k in keys if k != "scenario")
            if "N_opt" not in r:
                plan.add_row(
                    group,
                    r.get("scenario", ""),
                    "–",
                    "–",
                    "–",
                    r.get("note", ""),
                    r.get("status", ""),
                )
                continue
            plan.add_row(
                group,
                r["scenario"],
                _fmt(r["budget_flops"])
                + ("" if _fmt(r.get("budget_flops_low")) == "–" else " " + _ci(r, "budget_flops")),
                _fmt(r["N_opt"]) + " " + _ci(r, "N_opt"),
                _fmt(r["D_opt"]) + " " + _ci(r, "D_opt"),
                _fmt(r["loss"]) + " " + _ci(r, "loss"),
                r.get("status", "ok"),
            )
        reporter.show(plan)
    if summary.get("quality_tradeoff"):
        trade = Table(title="Clean the data or buy a bigger model? (ID loss gained)")
        for col in [
            "group",
            "quality now",
            "cleaned to",
            "gain: cleaning",
            "gain: model",
            "better",
        ]:
            trade.add_column(col)
        for r in summary["quality_tradeoff"]:
            group = " ".join(
                str(r.get(k, "")) for k in keys if k not in ("scenario", "train_quality")
            )
            trade.add_row(
                group,
                str(r.get("train_quality")),
                r["next_level"],
                _fmt(r["gain_cleaning"]) + " " + _ci(r, "gain_cleaning"),
                _fmt(r["gain_model"]) + " " + _ci(r, "gain_model"),
                r["better"],
            )
        reporter.show(trade)
    reporter.info(
        f"{summary['laws_fitted']} laws fitted, {summary['laws_not_fitted']} not fitted, "
        f"{summary['not_converged']} not converged; {summary.get('clear_differences', 0)} clear "
        f"differences after Holm's correction → {summary['out_dir']} (see report.md)"
    )


def fit_cmd(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="Results folders (train / embed-bench outputs, or folders of .parquet/.csv) "
            "or files; several are merged.",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Output folder \\[default: laws/ next to the input]."),
    ] = None,
    config: ConfigOpt = None,
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric", "-m", help="Metric column to fit (repeat for several) \\[default: crps]."
        ),
    ] = None,
    group_by: Annotated[
        str | None,
        typer.Option(
            "--group-by",
            help="Comma-separated grouping columns \\[default: arch, "
            "scenario, and horizon / train_quality / embedding when present].",
        ),
    ] = None,
    budget_flops: Annotated[
        float | None,
        typer.Option(
            "--budget-flops",
            help="Plan: compute-optimal N and D at this budget, predicted ID and OOD loss there.",
            show_default=False,
        ),
    ] = None,
    target_loss: Annotated[
        float | None,
        typer.Option(
            "--target-loss", help="Plan: compute needed to reach this ID loss.", show_default=False
        ),
    ] = None,
    max_extrapolation: Annotated[
        float | None,
        typer.Option(
            "--max-extrapolation",
            help="Plans beyond this factor of the largest run (compute, model size) are refused "
            "in the headline \\[default: 10].",
            show_default=False,
        ),
    ] = None,
    data_available: Annotated[
        float | None,
        typer.Option(
            "--data-available",
            help="Training data points that exist; a plan needing more is refused "
            "\\[default: the largest unique_points of the results].",
            show_default=False,
        ),
    ] = None,
    n_boot: Annotated[
        int | None,
        typer.Option("--bootstrap", help="Bootstrap resamples over runs \\[default: 1000]."),
    ] = None,
    level: Annotated[
        float | None, typer.Option("--level", help="Interval coverage \\[default: 0.95].")
    ] = None,
    plots: Annotated[
        bool | None, typer.Option("--plots/--no-plots", help="Write PNG plots \\[default: on].")
    ] = None,
    seed: SeedOpt = None,
    json_mode: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    wait: WaitOpt = 0.0,
) -> None:
    """Fit scaling laws with bootstrap intervals, ID vs OOD → laws.parquet, report.md, plots.

    Laws L(N), L(D), L(C) and L(N, D); exponent differences ID vs OOD and encoder vs decoder;
    the compute-optimal model for --budget-flops / --target-loss.
    """

    def work(reporter):
        from tsfm_cli.fit import FitConfig, run_fit
        from tsfm_cli.recipe import build_config, load_section
        from tsfm_cli.stagedir import default_output

        values, source = load_section(config, "fit")
        overrides = {
            "metrics": metric or None,
            "group_by": comma_list(group_by),
            "budget_flops": budget_flops,
            "target_loss": target_loss,
            "max_extrapolation": max_extrapolation,
            "data_available": data_available,
            "n_boot": n_boot,
            "level": level,
            "plots": plots,
            "seed": seed,
        }
        cfg = build_config(FitConfig, values, source, overrides)
        out = output or default_output(inputs[0], "fit")
        return run_fit(inputs, out, cfg, reporter=reporter, command=sys.argv, wait_s=wait)

    run_stage(work, json_mode=json_mode, quiet=quiet, debug=debug, render=render)
