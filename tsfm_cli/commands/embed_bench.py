"""`tsfm embed-bench`: parse options, call `tsfm_cli.embed_bench.run_embed_bench`, render."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from tsfm_cli.commands.common import (
    ConfigOpt,
    DebugOpt,
    JsonOpt,
    QuietOpt,
    RunsDirOpt,
    SeedOpt,
    SplitsArg,
    WaitOpt,
    comma_list,
    run_stage,
)


def embed_bench_cmd(
    splits: SplitsArg,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Bench directory (default: bench/ next to INPUT).",
            show_default=False,
        ),
    ] = None,
    config: ConfigOpt = None,
    strategies: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated embeddings (default: all eight; the first is the reference "
            "for parameter matching).",
            show_default=False,
        ),
    ] = None,
    normalisations: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated normalisations (default: std,meanabs,none).", show_default=False
        ),
    ] = None,
    seeds: Annotated[
        int | None,
        typer.Option("--seeds", help="Seeds per strategy (default: 3).", show_default=False),
    ] = None,
    steps: Annotated[
        int | None, typer.Option(help="Training steps per run (default: 120).", show_default=False)
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option(
            help="Metric for ranks, heatmap and table (default: crps).", show_default=False
        ),
    ] = None,
    scale: Annotated[
        float | None,
        typer.Option(
            help="Multiply steps and evaluation windows (default: 1).", show_default=False
        ),
    ] = None,
    runs_dir: RunsDirOpt = None,
    seed: SeedOpt = None,
    json_mode: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    wait: WaitOpt = 0.0,
) -> None:
    """Compare input embeddings under one budget on every scenario → bench.parquet, bench.png.

    The same backbone is trained with each embedding (and normalisation), same data and steps,
    several seeds; summary.parquet ranks them with intervals over seeds.
    """

    def work(reporter) -> dict[str, Any]:
        from tsfm_cli.embed_bench import EmbedBenchConfig, run_embed_bench
        from tsfm_cli.recipe import build_config, load_section
        from tsfm_cli.stagedir import default_output

        values, source = load_section(config, "embed-bench")
        cfg = build_config(
            EmbedBenchConfig,
            values,
            source,
            overrides={
                "strategies": comma_list(strategies),
                "normalisations": comma_list(normalisations),
                "n_seeds": seeds,
                "steps": steps,
                "metric": metric,
                "scale": scale,
                "seed": seed,
            },
        )
        out = output if output is not None else default_output(splits, "embed-bench")
        return run_embed_bench(
            splits,
            out,
            cfg,
            reporter=reporter,
            command=sys.argv,
            wait_s=wait,
            source=source,
            runs_dir=runs_dir,
        )

    run_stage(work, json_mode=json_mode, quiet=quiet, debug=debug, render=_render)


def _fmt(mean: Any, low: Any = None, high: Any = None) -> str:
    if mean is None:
        return "–"
    if low is None or high is None:
        return f"{mean:.3g}"
    return f"{mean:.3g}±{(high - low) / 2:.2g}"


def _ties(names: list[str] | None, best: bool = False) -> str:
    names = names or []
    if not names:
        return "–"
    return ", ".join(names) if len(names) <= (2 if best else 1) else f"{len(names)} others"


def _render(summary: dict[str, Any], reporter) -> None:
    from rich import box
    from rich.table import Table

    metric = summary.get("metric", "crps")
    if summary.get("skipped"):
        reporter.info("embed-bench: nothing to redo (same inputs and settings)")
    table = Table(
        title=f"{metric}: mean±95% interval over seeds; rank by OOD, equal where intervals overlap",
        box=box.SIMPLE_HEAD,
    )
    for name in ("rank", "strategy", "params", "ID", "OOD", "OOD÷ID", "tied with"):
        table.add_column(name, justify="right" if name in ("rank", "params") else "left",
                         no_wrap=name != "tied with")  # fmt: skip
    for row in summary.get("table", []):
        table.add_row(
            str(row.get("rank", "–")),
            row["strategy"],
            f"{(row.get('params_total') or 0) / 1000:.1f}K",
            _fmt(row.get("id"), row.get("id_low"), row.get("id_high")),
            _fmt(row.get("ood"), row.get("ood_low"), row.get("ood_high")),
            _fmt(row.get("robustness"), row.get("robustness_low"), row.get("robustness_high")),
            _ties(row.get("tied_with")),
        )
    reporter.show(table)
    best = Table(title=f"best strategy per scenario ({metric})", box=box.SIMPLE_HEAD)
    for name in ("scenario", "best", metric, "not distinguishable from"):
        best.add_column(name, no_wrap=name != "not distinguishable from")
    for row in summary.get("best_per_scenario", []):
        best.add_row(
            row["scenario"],
            row["strategy"],
            _fmt(row.get("mean"), row.get("ci_low"), row.get("ci_high")),
            _ties(row.get("tied_with"), best=True),
        )
    reporter.show(best)
    if summary.get("chosen"):
        reporter.info(
            f"chosen on validation windows ({metric}): {summary['chosen']}; the tables above are "
            "test results"
        )
    reporter.info(
        f"{summary.get('runs_ok', 0)}/{summary.get('runs', 0)} runs ok; parameters within "
        f"{(summary.get('params_spread') or 0):.1%} of each other; wrote {summary.get('out_dir')}"
    )
