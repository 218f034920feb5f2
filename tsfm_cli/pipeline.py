"""`tsfm run`: the whole chain from one recipe, like make.

Each stage writes `workdir/<stage>/`. Skipping comes from the stages themselves: a stage whose
inputs (files, or the upstream manifest's hash) and settings are unchanged returns at once with
`skipped: true`, so an unchanged upstream stage leaves every later stage skipped too, and a change
reruns exactly the stages after it. Every section is validated before anything runs, so a typo
in `fit:` fails in a second, not after hours of training.
"""

from __future__ import annotations

import importlib
import inspect
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tsfm_cli.errors import BadInputError
from tsfm_cli.recipe import build_config, config_dict, load_section
from tsfm_cli.stagedir import check_output_dir
from tsfm_cli.ui import Reporter


@dataclass
class RunConfig:
    """The recipe's `run:` section."""

    sources: list[str] = field(default_factory=lambda: ["sample_data"])
    workdir: str = "work"
    stages: list[str] | None = None


@dataclass(frozen=True)
class StageSpec:
    name: str
    module: str
    function: str
    config_class: str
    upstream: str | None  # the stage whose directory is this one's input; None: raw sources
    check: str  # "module:function" checking the settings' values: (config, source) → None


PIPELINE: tuple[StageSpec, ...] = (
    StageSpec(
        "ingest",
        "tsfm_cli.ingest",
        "run_ingest",
        "IngestConfig",
        None,
        "tsfm_cli.ingest.config:check_settings",
    ),
    StageSpec(
        "ood-split",
        "tsfm_cli.ood",
        "run_ood_split",
        "OodConfig",
        "ingest",
        "tsfm_cli.ood.config:check_config",
    ),
    StageSpec(
        "embed-bench",
        "tsfm_cli.embed_bench",
        "run_embed_bench",
        "EmbedBenchConfig",
        "ood-split",
        "tsfm_cli.embed_bench.config:check_config",
    ),
    StageSpec(
        "train",
        "tsfm_cli.train",
        "run_train",
        "TrainConfig",
        "ood-split",
        "tsfm_cli.train.config:check_settings",
    ),
    StageSpec(
        "fit", "tsfm_cli.fit", "run_fit", "FitConfig", "train", "tsfm_cli.fit.config:check_settings"
    ),
)
STAGE_NAMES = tuple(spec.name for spec in PIPELINE)


def select_stages(
    wanted: list[str] | None, from_stage: str | None, only: list[str] | None
) -> list[StageSpec]:
    for name in [*(wanted or []), *(only or []), *([from_stage] if from_stage else [])]:
        if name not in STAGE_NAMES:
            raise BadInputError(f"unknown stage '{name}' (stages: {', '.join(STAGE_NAMES)})")
    chosen = [spec for spec in PIPELINE if wanted is None or spec.name in wanted]
    if from_stage is not None:
        start = STAGE_NAMES.index(from_stage)
        chosen = [spec for spec in chosen if STAGE_NAMES.index(spec.name) >= start]
    if only:
        chosen = [spec for spec in chosen if spec.name in only]
    return chosen


def _stage_api(spec: StageSpec) -> tuple[Any, type, Any]:
    module = importlib.import_module(spec.module)
    check_module, check_name = spec.check.split(":")
    check = getattr(importlib.import_module(check_module), check_name)
    return getattr(module, spec.function), getattr(module, spec.config_class), check


def run_pipeline(
    recipe: Path,
    *,
    workdir: Path | None = None,
    from_stage: str | None = None,
    only: list[str] | None = None,
    reporter: Reporter | None = None,
    command: list[str] | None = None,
    wait_s: float = 0.0,
) -> dict[str, Any]:
    """Run the selected stages of `recipe` into `workdir/<stage>/`; returns the run's summary."""
    reporter = reporter or Reporter()
    values, source = load_section(recipe, "run")
    run_config = build_config(RunConfig, values, source)
    root = Path(workdir if workdir is not None else run_config.workdir)
    stages = select_stages(run_config.stages, from_stage, only)

    prepared = []
    # every section is checked before the first stage starts, also those of stages this run
    # leaves out (--from, --only, run.stages): a recipe with a typo anywhere fails at once
    for spec in PIPELINE:
        function, config_class, check = _stage_api(spec)
        section, section_source = load_section(recipe, spec.name)
        config = build_config(config_class, section, section_source)
        check(config, section_source)  # values too, not only keys and types
        if spec not in stages:
            continue
        extra = (
            {"source": section_source} if "source" in inspect.signature(function).parameters else {}
        )
        prepared.append((spec, function, config, extra))
    for spec in stages:  # a stage folder that is the user's stops the run before any stage
        check_output_dir(root / spec.name, spec.name)

    report: list[dict[str, Any]] = []
    for spec, function, config, extra in prepared:
        if spec.upstream is None:
            inputs: Any = [Path(p) for p in run_config.sources]
        else:
            inputs = root / spec.upstream
            if not (inputs / "manifest.json").is_file():
                raise BadInputError(
                    f"{inputs}: stage '{spec.upstream}' has not run yet; "
                    f"run without --from/--only first"
                )
        out_dir = root / spec.name
        reporter.info(f"[bold]{spec.name}[/bold] → {out_dir}")
        started = time.monotonic()
        summary = function(
            inputs, out_dir, config, reporter=reporter, command=command, wait_s=wait_s, **extra
        )
        report.append(
            {
                "stage": spec.name,
                "status": "skipped" if summary.get("skipped") else "ran",
                "seconds": round(time.monotonic() - started, 2),
                "out_dir": str(out_dir),
                "plots": sorted(str(p) for p in out_dir.glob("*.png")),
                "summary": summary,
            }
        )
    return {
        "recipe": str(recipe),
        "workdir": str(root),
        "run": config_dict(run_config),
        "stages": report,
    }
