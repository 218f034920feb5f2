"""Reading and merging results tables: tsfm stage folders, or any parquet/CSV with the columns.

Minimal columns: one metric column (the one fitted, e.g. ``crps``) and at least one of ``params``
(N), ``data_points`` (D) or ``flops`` (C; derived as 6·params·tokens when only ``tokens`` is
there). Optional: ``run_id`` (default: one run per distinct ``RUN_KEYS`` values), ``arch``
(default "model"), ``scenario`` (default "id"), ``step`` (checkpoint; default one per row),
``status`` (rows other than "ok" are left out and counted), ``kind``, ``horizon``,
``train_quality``, ``embedding``, ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from tsfm_cli.errors import BadInputError
from tsfm_cli.schema import ID_SCENARIO
from tsfm_cli.stagedir import describe_file, open_stage, read_manifest

X_COLUMNS = {"N": "params", "D": "data_points", "C": "flops"}
# what tells runs apart when the table has no run_id
RUN_KEYS = (
    "arch",
    "params",
    "data_points",
    "seed",
    "train_quality",
    "embedding",
    "strategy",
    "normalisation",
)
STAGE_FILES = {"train": "results.parquet", "embed-bench": "bench.parquet"}
WINDOWS_FILE = "window_metrics.parquet"  # train's per-window metrics, next to results.parquet
CONFIG = "_config"  # a run without its seed: the bootstrap draws seeds within it
WINDOW_KEYS = ("run_id", "step", "scenario", "horizon", "split")


@dataclass
class Loaded:
    frame: pl.DataFrame
    inputs: list[dict[str, Any]]
    dropped: dict[str, int] = field(default_factory=dict)  # reason → rows
    windows: int = 0  # window rows read from window_metrics.parquet (0: none found)
    seeds: int = 1  # most seeds of any configuration


def _read_file(path: Path) -> pl.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pl.read_parquet(path)
        if suffix in (".csv", ".txt"):
            return pl.read_csv(path, infer_schema_length=10_000)
    except Exception as exc:  # noqa: BLE001 - any reader failure is bad input
        raise BadInputError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from exc
    raise BadInputError(f"{path}: not a .parquet or .csv file")


def _expand(path: Path) -> tuple[list[Path], dict[str, Any] | None]:
    """Files to read for one input, and how the input is recorded in the manifest."""
    if not path.exists():
        raise BadInputError(f"{path}: no such file or directory")
    if path.is_file():
        return [path], describe_file(path)
    manifest = read_manifest(path)
    if manifest is not None:
        stage = manifest.get("stage")
        if stage not in STAGE_FILES:
            raise BadInputError(
                f"{path}: is a '{stage}' directory; fit reads results of 'train' or 'embed-bench'"
            )
        stage_in = open_stage(path, tuple(STAGE_FILES))
        # window_metrics.parquet (when the stage wrote one) is read too: verified, and identity
        described = stage_in.describe(STAGE_FILES[stage], WINDOWS_FILE)
        return [stage_in.file(STAGE_FILES[stage])], described
    files = sorted([*path.glob("*.parquet"), *path.glob("*.csv")])
    if not files:
        raise BadInputError(f"{path}: no results (.parquet or .csv) in this directory")
    return files, None


def read_results(paths: list[Path], metrics: list[str]) -> Loaded:
    """Read, check and merge every input; rows not usable are counted, never silently lost."""
    if not paths:
        raise BadInputError("no input given: pass one or more results folders or files")
    frames, inputs = [], []
    for raw in paths:
        files, described = _expand(Path(raw))
        inputs.append(described if described else {"path": str(raw)})
        for f in files:
            if described is None:
                inputs.append(describe_file(f))
            frame = _read_file(f)
            frames.append(frame.with_columns(pl.lit(str(f)).alias("_source")))
    try:
        merged = pl.concat(frames, how="diagonal_relaxed")
    except Exception as exc:  # noqa: BLE001
        raise BadInputError(f"cannot merge the inputs: {exc}") from exc
    frame, dropped = normalise(merged, metrics, where=str(paths[0]))
    windows = _read_windows(paths)
    n_windows = 0
    if windows is not None:
        frame, n_windows = join_window_errors(frame, windows, metrics)
    seeds = 1
    if CONFIG in frame.columns:
        seeds = int(frame.group_by(CONFIG).agg(pl.col("run_id").n_unique())["run_id"].max())
    return Loaded(frame, inputs, dropped, n_windows, seeds)


def _read_windows(paths: list[Path]) -> pl.LazyFrame | None:
    """window_metrics.parquet next to each input (in a folder, or beside a file), scanned
    lazily: only its key, series and metric columns are collected (join_window_errors)."""
    found = []
    for raw in paths:
        path = Path(raw)
        candidate = (path if path.is_dir() else path.parent) / WINDOWS_FILE
        if candidate.is_file() and candidate not in found:
            found.append(candidate)
    if not found:
        return None
    try:
        scans = [pl.scan_parquet(f) for f in found]
        for scan in scans:
            scan.collect_schema()  # a broken file fails here
    except Exception as exc:  # noqa: BLE001
        names = ", ".join(str(f) for f in found)
        raise BadInputError(f"{names}: cannot read ({type(exc).__name__}: {exc})") from exc
    return pl.concat(scans, how="diagonal_relaxed")


def join_window_errors(
    frame: pl.DataFrame, windows: pl.LazyFrame, metrics: list[str]
) -> tuple[pl.DataFrame, int]:
    """Add `<metric>_se`: the standard error of each result row's mean over its windows.

    Windows of one series are correlated (overlapping contexts, one sensor), so the error is
    that of the mean of per-series means when a row has ≥ 2 series, else of the window mean.
    Returns the frame and the number of window rows read.
    """
    schema = windows.collect_schema()
    keys = [k for k in WINDOW_KEYS if k in schema and k in frame.columns]
    present = [m for m in metrics if m in schema]
    if "run_id" not in keys or not present:
        return frame, 0
    cast = [pl.col(k).cast(frame.schema[k]) for k in keys]
    w = windows.with_columns(cast + [pl.col(m).cast(pl.Float64) for m in present])
    cluster = "series_id" if "series_id" in schema else None
    aggs = []
    for m in present:
        ok = pl.col(m).filter(pl.col(m).is_finite())
        aggs.append((ok.std() / ok.count().sqrt()).alias(f"_w_{m}"))
    # every aggregation sees its rows in one fixed order: a float sum in another order differs
    # in the last bits, and the same data must give the same fit to the last bit
    order = [*keys, *(["window_id"] if "window_id" in schema else [])]
    # collected first: the lazy engine's partitioned aggregation combines partial sums in
    # whatever order its threads finish; the eager one reduces each group's rows in order
    needed = list(dict.fromkeys([*order, *([cluster] if cluster else []), *present]))
    w = (
        w.select(needed)
        .sort(order if cluster is None else [*keys, cluster, *order[len(keys) :]])
        .collect()
    )
    errors = w.group_by(keys, maintain_order=True).agg(*aggs, pl.len().alias("_windows"))
    if cluster is not None:
        series = (
            w.group_by([*keys, cluster], maintain_order=True)
            .agg([pl.col(m).filter(pl.col(m).is_finite()).mean() for m in present])
            .group_by(keys, maintain_order=True)
            .agg(
                [
                    pl.when(pl.col(m).is_not_null().sum() >= 2)
                    .then(pl.col(m).std() / pl.col(m).is_not_null().sum().sqrt())
                    .alias(f"_s_{m}")
                    for m in present
                ]
            )
        )
        errors = errors.join(series, on=keys, how="left")
    else:
        errors = errors.with_columns([pl.lit(None, pl.Float64).alias(f"_s_{m}") for m in present])
    errors = errors.select(
        *keys,
        "_windows",
        *[pl.coalesce(f"_s_{m}", f"_w_{m}").alias(f"{m}_se") for m in present],
    )
    n_windows = int(errors["_windows"].sum())
    return frame.join(errors.drop("_windows"), on=keys, how="left"), n_windows


def normalise(
    frame: pl.DataFrame, metrics: list[str], where: str
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Defaults for optional columns, derived C, numeric types; returns (frame, dropped counts)."""
    cols = set(frame.columns)
    missing = [m for m in metrics if m not in cols]
    if missing:
        raise BadInputError(
            f"{where}: metric column(s) {', '.join(missing)} not found "
            f"(columns: {', '.join(sorted(c for c in cols if not c.startswith('_')))})"
        )
    if "flops" not in cols and {"params", "tokens"} <= cols:
        frame = frame.with_columns((6.0 * pl.col("params") * pl.col("tokens")).alias("flops"))
        cols.add("flops")
    if not cols & set(X_COLUMNS.values()):
        raise BadInputError(
            f"{where}: needs at least one of the columns params (N), data_points (D), flops (C)"
        )
    defaults = {"arch": "model", "scenario": ID_SCENARIO}
    frame = frame.with_columns(
        [
            pl.col(k).cast(pl.String).fill_null(v) if k in cols else pl.lit(v).alias(k)
            for k, v in defaults.items()
        ]
    )
    casts = [pl.col(c).cast(pl.Float64, strict=False) for c in X_COLUMNS.values() if c in cols]
    casts += [pl.col(m).cast(pl.Float64, strict=False) for m in metrics]
    frame = frame.with_columns(casts)
    if "run_id" not in cols:
        keys = [c for c in RUN_KEYS if c in cols]
        frame = frame.with_columns(
            pl.concat_str(
                [pl.col(k).cast(pl.String) for k in keys], separator="|", ignore_nulls=True
            ).alias("run_id")
        )
    else:
        frame = frame.with_columns(pl.col("run_id").cast(pl.String))
    if "seed" in cols:
        keys = [c for c in RUN_KEYS if c in cols and c != "seed"]
        frame = frame.with_columns(
            pl.concat_str(
                [pl.col(k).cast(pl.String) for k in keys], separator="|", ignore_nulls=True
            ).alias(CONFIG)
            if keys
            else pl.col("run_id").alias(CONFIG)
        )
    if "step" not in cols:
        frame = frame.with_row_index("step").with_columns(pl.col("step").cast(pl.Int64))
    dropped: dict[str, int] = {}
    if "status" in cols:
        bad = frame.filter(pl.col("status").cast(pl.String).fill_null("") != "ok").height
        if bad:
            dropped["status not ok (failed runs)"] = bad
        frame = frame.filter(pl.col("status").cast(pl.String) == "ok")
    if frame.is_empty():
        raise BadInputError(f"{where}: no usable rows (every run failed or the table is empty)")
    return frame, dropped
