"""`run_ood_split`: ingest directory → train.parquet, eval.parquet, scenarios.parquet, plot."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tsfm_cli.errors import BadInputError
from tsfm_cli.ood.config import OodConfig, check_config, iso_time, split_points
from tsfm_cli.ood.data import (
    CHUNK_ROWS,
    Plant,
    SeriesMeta,
    carried_keys,
    check_columns,
    chunks,
    custom_expr,
    empty_plant,
    group_keys,
    load_chunk,
    load_meta,
)
from tsfm_cli.ood.plot import plot_scenarios
from tsfm_cli.ood.scenarios import (
    Natural,
    hide_custom,
    natural_blocks,
    natural_plan,
    onset_index,
    synthetic_block,
    synthetic_plan,
    val_plan,
)
from tsfm_cli.ood.shards import (
    WINDOWS,
    find_shards,
    merged_parts,
    shard_series,
    windows_frame,
)
from tsfm_cli.ood.shift import MEASURES, measure, pool, value_shift
from tsfm_cli.ood.windows import (
    EVAL_SCHEMA,
    Block,
    WindowIds,
    block_frame,
    concat_blocks,
    eval_schema,
    rng_for,
)
from tsfm_cli.recipe import RecipeSource, config_dict
from tsfm_cli.series_dataset import SeriesSource, open_series
from tsfm_cli.stagedir import (
    StageWriter,
    claim_output,
    fingerprint,
    open_stage,
    parse_shard,
    reuse_summary,
    shard_dir,
)
from tsfm_cli.ui import Reporter

SHOWN_SKIPPED = 20


def _resolve_heldout(
    plant: SeriesMeta, cfg: OodConfig, source: RecipeSource
) -> list[tuple[str, str]]:
    """(key, value) per heldout entry; a bare key picks one of its values with the seed."""
    pairs = []
    for entry in cfg.heldout:
        key, has_value, value = entry.partition("=")
        values = sorted(set(plant.groups[key].tolist()) - {None})
        if has_value:
            if value not in values:
                shown = ", ".join(map(str, values[:10]))
                raise BadInputError(
                    f"{source.where('heldout')}: no series has {key}={value} (values: {shown})"
                )
        else:
            if len(values) < 2:
                raise BadInputError(
                    f"{source.where('heldout')}: '{key}' has {len(values)} value(s); "
                    "leaving one group out needs at least 2"
                )
            value = values[int(rng_for(cfg.seed, "heldout", key).integers(len(values)))]
        if (key, value) not in pairs:
            pairs.append((key, value))
    return pairs


def _scenario_rows(
    named: dict[str, Callable[[], list[Block]]],
    plant: SeriesMeta,
    cfg: OodConfig,
    reference_blocks: list[Block],
) -> list[dict[str, Any]]:
    """One row per scenario (in `named` order); each scenario's blocks are asked for when its
    row is made, so synthetic windows are in memory one scenario at a time."""
    reference = pool(reference_blocks, cfg.context_length, plant.freq_s, rng_for(cfg.seed, "ref"))

    def pool_of(name: str, group: list[Block]):
        return pool(group, cfg.context_length, plant.freq_s, rng_for(cfg.seed, name))

    id_pool = pool_of("id", named["id"]())  # natural_plan always plans `id`, at every horizon
    rows = []
    for name, blocks_of in named.items():
        group = blocks_of()
        first = group[0]
        scenario_pool = id_pool if name == "id" else pool_of(name, group)
        ks_id, wasserstein_id = value_shift(scenario_pool, id_pool)
        series = np.unique(np.concatenate([b.series for b in group]))
        rows.append(
            {
                "scenario": name,
                "family": first.family,
                "kind": first.kind,
                "severity": first.severity,
                "params": json.dumps(first.params, sort_keys=True),
                "n_windows": sum(b.n for b in group),
                "n_series": len(series),
                **measure(scenario_pool, reference),
                "ks_id": ks_id,
                "wasserstein_id": wasserstein_id,
            }
        )
        del group
    return rows


def _write_eval(writer: StageWriter, frames: Iterable[pl.DataFrame], schema: dict) -> int:
    """eval.parquet one block at a time (a row group each): never the whole frame in memory."""
    import pyarrow.parquet as pq

    path = writer.dir / "eval.parquet"
    rows = 0
    arrow_schema = pl.DataFrame(schema=schema).to_arrow().schema
    with pq.ParquetWriter(path, arrow_schema, compression="zstd") as out:
        for frame in frames:
            if frame.height:
                out.write_table(frame.to_arrow().cast(arrow_schema))
                rows += frame.height
    writer.register("eval.parquet", rows=rows)
    return rows


SCENARIO_SCHEMA = {
    "scenario": pl.String,
    "family": pl.String,
    "kind": pl.String,
    "severity": pl.Float64,
    "params": pl.String,
    "n_windows": pl.Int64,
    "n_series": pl.Int64,
    **dict.fromkeys(MEASURES, pl.Float64),
    "ks_id": pl.Float64,
    "wasserstein_id": pl.Float64,
}


def _write_train(
    writer: StageWriter,
    series: SeriesSource,
    plant: SeriesMeta,
    train_end_us: np.ndarray,
    held: set[int],
    custom: dict[str, pl.Expr],
) -> int:
    """Stream the training rows (before each series' val_start, held-out series left out)."""
    kept = [i for i in range(plant.n_series) if i not in held]
    # one row-local lookup (held-out series map to null and drop out); `is_in` would stop
    # polars from streaming and hold the whole file in memory
    cut = pl.col("series_id").replace_strict(
        [plant.series_ids[i] for i in kept],
        [int(train_end_us[i]) for i in kept],
        default=None,
        return_dtype=pl.Int64,
    )
    lf = series.scan().filter(pl.col("timestamp").dt.epoch("us") < cut)
    if custom:
        hide = pl.any_horizontal([expr.fill_null(False) for expr in custom.values()])
        lf = lf.with_columns(
            observed=pl.col("observed") & ~hide,
            value=pl.when(hide).then(None).otherwise(pl.col("value")),
        )
    path = writer.dir / "train.parquet"
    lf.sink_parquet(path, compression="zstd")
    rows = pl.scan_parquet(path).select(pl.len()).collect().item()
    writer.register("train.parquet", rows=rows)
    return rows


def _cut_plant(
    plant: Plant,
    members: set[int],
    cfg: OodConfig,
    splits: dict[str, np.ndarray],
    held: dict[tuple[str, str], list[int]],
    seen: list[int],
    short: np.ndarray,
    progress: Any,
) -> dict[str, list]:
    """Every window (without ids yet) of the series `members` of a chunk: the natural test
    scenarios, validation (with custom points hidden, and which windows survive that) and the
    training-period reference, one block per scenario × horizon in the fixed order."""

    def inside(series: list[int]) -> list[int]:
        return [i for i in series if i in members]

    mine = inside(seen)
    plan = natural_plan(plant, cfg, splits, {k: inside(v) for k, v in held.items()}, mine, short)
    natural = natural_blocks(plant, cfg, plan, None, progress)
    val, val_keep = [], []
    for block in natural_blocks(plant, cfg, val_plan(splits, mine), None, progress):
        hidden, keep = hide_custom(block, plant, cfg.context_length)
        val.append(hidden)
        val_keep.append(keep)
    reference_plan = [Natural("train", "train", "train", mine, None, splits["val_start"])]
    reference = natural_blocks(plant, cfg, reference_plan, None, progress)
    return {"natural": natural, "val": val, "val_keep": val_keep, "reference": reference}


def _merge(parts: list[dict[str, list]], kind: str, k: int) -> Block:
    return concat_blocks([p[kind][k] for p in parts])


def _named(blocks: list[Block], scenario: str) -> list[Block]:
    return [b for b in blocks if b.scenario == scenario]


def _with_ids(block: Block, ids: WindowIds) -> Block:
    block.window_id = ids.take(block.n)
    block.base_window_id = block.window_id
    return block


def _write_shard(
    out_dir: Path,
    index_count: tuple[int, int],
    frame: pl.DataFrame,
    settings: dict[str, Any],
    inputs_desc: list[dict[str, Any]],
    command: list[str] | None,
    wait_s: float,
) -> dict[str, Any]:
    with StageWriter(
        out_dir, "ood-split", config=settings, inputs=inputs_desc, command=command, wait_s=wait_s
    ) as writer:
        writer.write_parquet(WINDOWS, frame)
        summary = {
            "out_dir": str(out_dir),
            "skipped": False,
            "shard": f"{index_count[0]}/{index_count[1]}",
            "series": frame["series"].n_unique(),
            "windows": frame.height,
        }
        writer.commit(summary=summary)
    return summary


def run_ood_split(
    inputs: Path | str | list[Path],
    out_dir: Path | str,
    config: OodConfig,
    *,
    reporter: Reporter | None = None,
    command: list[str] | None = None,
    wait_s: float = 0.0,
    source: RecipeSource | None = None,
    chunk_rows: int = CHUNK_ROWS,
    shard: str = "0/1",
) -> dict[str, Any]:
    """Build train.parquet, eval.parquet, scenarios.parquet and scenarios.png in `out_dir`.

    With `shard` "i/n" (n > 1) only cut the windows of shard i's series into
    `OUT-shard-i-of-n/`; a later run without `shard` merges the n shard folders (shards.py)."""
    try:
        index_count = parse_shard(shard)
    except ValueError as exc:
        raise BadInputError(f"shard: {exc}") from None
    reporter = reporter or Reporter()
    source = source or RecipeSource()
    cfg = config
    if isinstance(inputs, (list, tuple)):
        if len(inputs) != 1:
            raise BadInputError("ood-split reads exactly one ingest directory")
        inputs = inputs[0]
    upstream = open_stage(Path(inputs), "ingest")
    out_dir = Path(out_dir)
    final_dir = out_dir
    if index_count[1] > 1:
        out_dir = shard_dir(out_dir, *index_count)
    claim_output(out_dir, "ood-split", [upstream.path])
    check_config(cfg, source)
    series = open_series(upstream)  # every file verified against the manifest
    columns = series.columns()
    check_columns(series, columns)
    keys = group_keys(columns)
    for entry in cfg.heldout:
        key = entry.partition("=")[0]
        if key not in keys:
            raise BadInputError(
                f"{source.where('heldout')}: group key '{key}' is not a column of "
                f"{series} (group keys: {', '.join(keys)})"
            )
    custom = {
        name: custom_expr(name, cond, columns, source.where("custom"))
        for name, cond in cfg.custom.items()
    }
    settings = config_dict(cfg)
    inputs_desc = [series.description]
    # a shard records the unsharded run's fingerprint: the merge takes only shards of its own
    # settings and input
    merged_fp = fingerprint(settings, inputs_desc)
    shard_settings = {**settings, "shard": shard, "merges_into": merged_fp}
    own_fp = fingerprint(shard_settings, inputs_desc) if index_count[1] > 1 else merged_fp
    reused = reuse_summary(out_dir, "ood-split", own_fp, reporter)
    if reused is not None:
        return reused
    shard_folders = find_shards(final_dir) if index_count[1] == 1 else []
    for folder in shard_folders:
        made_for = open_stage(folder, "ood-split").manifest.get("config", {}).get("merges_into")
        if made_for != merged_fp:
            raise BadInputError(
                f"{folder}: a shard of other settings or another input; rerun it with these "
                "settings, or delete the shard folders"
            )

    heldout_keys = sorted({e.partition("=")[0] for e in cfg.heldout})
    carried = carried_keys(columns)
    clashing = [k for k in carried if k in EVAL_SCHEMA]
    if clashing:
        reporter.warn(
            f"group key(s) {', '.join(clashing)} share a name with an eval.parquet column; "
            "not carried into eval.parquet"
        )
        carried = [k for k in carried if k not in clashing]
    plant = load_meta(series, heldout_keys, carried)
    if plant.n_series == 0:
        raise BadInputError(f"{series}: no series to split")
    pairs = _resolve_heldout(plant, cfg, source)
    splits = split_points(cfg, plant.first_us, plant.last_us, source)
    C = cfg.context_length
    if cfg.patch_size and (C % cfg.patch_size or any(h % cfg.patch_size for h in cfg.horizons)):
        reporter.warn(
            f"context_length {C} or horizons {cfg.horizons} are not multiples of "
            f"patch_size {cfg.patch_size}; patch models will pad"
        )

    short = plant.lengths < C + min(cfg.horizons)
    skipped = [plant.series_ids[i] for i in np.flatnonzero(short)]
    if skipped:
        reporter.warn(
            f"{len(skipped)} series shorter than context + shortest horizon "
            f"({C + min(cfg.horizons)} points) skipped: {', '.join(skipped[:5])}"
            + (" …" if len(skipped) > 5 else "")
        )
    held = {(k, v): np.flatnonzero(plant.groups[k] == v).tolist() for k, v in pairs}
    held_any = {i for members in held.values() for i in members}
    if held_any and len(held_any) == plant.n_series:
        raise BadInputError(f"{source.where('heldout')}: holds out every series; nothing to train")
    seen = [i for i in range(plant.n_series) if i not in held_any and not short[i]]
    if index_count[1] > 1:
        mine = set(shard_series(plant.series_ids, *index_count))
        parts = chunks(plant, chunk_rows, [i for i in range(plant.n_series) if i in mine])
    elif shard_folders:
        parts = []  # the shards cut the windows
    else:
        parts = chunks(plant, chunk_rows)
    n_plan = len(held) + len(cfg.custom) + 2  # id, future, heldout:…, custom:…
    n_val = 1 if (splits["val_start"] < splits["id_start"]).any() else 0
    n_steps = len(parts) * (n_plan + n_val + 1) * len(cfg.horizons)
    with reporter.progress("ood-split", total=n_steps, unit="blocks") as task:
        cut_parts = []
        for members in parts:
            chunk = load_chunk(series, plant, members, custom)
            cut = (chunk, set(members), cfg, splits, held, seen, short, task.advance)
            cut_parts.append(_cut_plant(*cut))
            del chunk
        if index_count[1] > 1:
            frame = windows_frame(cut_parts)
            return _write_shard(
                out_dir, index_count, frame, shard_settings, inputs_desc, command, wait_s
            )
        if shard_folders:
            skeleton = _cut_plant(
                empty_plant(plant, custom), set(), cfg, splits, held, [], short, lambda: None
            )
            frames = [
                pl.read_parquet(open_stage(p, "ood-split").file(WINDOWS)) for p in shard_folders
            ]
            cut_parts = [merged_parts(skeleton, frames)]
            del frames
        # window ids in the order of one pass over the whole plant: natural test scenarios,
        # synthetic ones, then validation windows (so test windows keep their ids whatever
        # val_fraction is); validation windows emptied by custom conditions drop out after
        ids = WindowIds()
        natural = [
            _with_ids(_merge(cut_parts, "natural", k), ids)
            for k in range(n_plan * len(cfg.horizons))
        ]
        id_blocks = [b for b in natural if b.scenario == "id"]
        synthetic = synthetic_plan(cfg, id_blocks, ids)
        validation = []
        for k in range(n_val * len(cfg.horizons)):
            block = _with_ids(_merge(cut_parts, "val", k), ids)
            keep = np.concatenate([p["val_keep"][k] for p in cut_parts])
            validation.append(block.subset(keep))
        reference = [_merge(cut_parts, "reference", k) for k in range(len(cfg.horizons))]
        del cut_parts
        named: dict[str, Callable[[], list[Block]]] = {}
        for block in natural:
            named.setdefault(block.scenario, lambda s=block.scenario: _named(natural, s))
        for item in synthetic:
            named.setdefault(
                item.scenario,
                lambda s=item.scenario: [
                    synthetic_block(cfg, x) for x in synthetic if x.scenario == s
                ],
            )
        for block in validation:
            named.setdefault(block.scenario, lambda s=block.scenario: _named(validation, s))
        scenario_rows = _scenario_rows(named, plant, cfg, reference)
        del reference
    if not any(b.n for b in id_blocks):
        raise BadInputError(
            f"{series}: no ID window fits: context_length {C} + horizons {cfg.horizons} "
            f"need more points in [id_start, train_end) = [{cfg.id_start}, {cfg.train_end}) "
            "of some series"
        )
    for row in scenario_rows:
        if row["n_windows"] == 0:
            reporter.warn(f"scenario {row['scenario']} has no windows")

    def eval_frames() -> Iterable[pl.DataFrame]:
        """eval.parquet's rows in order: natural test windows, synthetic, validation."""
        for block in natural:
            yield block_frame(block, plant, C)
        for item in synthetic:
            yield block_frame(synthetic_block(cfg, item), plant, C)
        for block in validation:
            yield block_frame(block, plant, C)

    scenarios = pl.DataFrame(scenario_rows, schema=SCENARIO_SCHEMA)
    resolved = {
        "split_points": {
            k: {"first": iso_time(v[seen].min()), "last": iso_time(v[seen].max())} if seen else None
            for k, v in splits.items()
        },
        "heldout": [f"{k}={v}" for k, v in pairs],
        "onset_index": onset_index(cfg),
        "patch_friendly": not cfg.patch_size
        or all(x % cfg.patch_size == 0 for x in [C, *cfg.horizons]),
    }
    with StageWriter(
        out_dir, "ood-split", config=settings, inputs=inputs_desc, command=command, wait_s=wait_s
    ) as writer:
        train_rows = _write_train(writer, series, plant, splits["val_start"], held_any, custom)
        eval_rows = _write_eval(writer, eval_frames(), eval_schema(plant))
        writer.write_parquet("scenarios.parquet", scenarios)
        severity = max(cfg.severities) if cfg.severities else 1.0
        base = max((b for b in id_blocks if b.n), key=lambda b: b.horizon, default=None)
        plot_scenarios(
            writer.dir / "scenarios.png",
            base,
            cfg.families,
            severity,
            onset_index(cfg),
            C,
            cfg.seed,
        )
        writer.register("scenarios.png")
        summary = {
            "out_dir": str(out_dir),
            "skipped": False,
            "series": plant.n_series,
            "series_too_short": len(skipped),
            "too_short_ids": skipped[:SHOWN_SKIPPED],
            "heldout_series": len(held_any),
            "train_rows": train_rows,
            "eval_windows": eval_rows,
            "val_windows": sum(b.n for b in validation),
            "group_keys": carried,
            "context_length": C,
            "horizons": list(cfg.horizons),
            **resolved,
            "scenarios": [
                {k: row[k] for k in ("scenario", "kind", "n_windows", "ks", "wasserstein")}
                for row in scenario_rows
            ],
        }
        writer.commit(summary=summary, resolved=resolved)
    return summary
