"""report.parquet (one row per series) and quality.png (a timeline per series)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from tsfm_cli.ingest.config import format_duration
from tsfm_cli.schema import Flag

FAULT_BITS = int(Flag.OUT_OF_RANGE | Flag.SPIKE | Flag.STUCK | Flag.DUPLICATE_CONFLICT)
PLOT_BINS = 400
PLOT_MAX_SERIES = 120


def build_report(
    grid: pl.DataFrame, key_cols: list[str], units: dict[str, str | None]
) -> pl.DataFrame:
    counts = [
        ((pl.col("flags") & int(flag)) != 0).sum().cast(pl.Int64).alias(flag.name.lower())
        for flag in Flag
    ]
    report = (
        grid.group_by("series_id")
        .agg(
            pl.col("sensor").first(),
            *[pl.col(k).first() for k in key_cols],
            pl.col("source").unique().sort().str.join(";").alias("sources"),
            pl.len().cast(pl.Int64).alias("points"),
            pl.col("observed").sum().cast(pl.Int64).alias("observed"),
            *counts,
            pl.col("freq_s").first(),
            pl.col("timestamp").min().alias("start"),
            pl.col("timestamp").max().alias("end"),
        )
        .with_columns(
            missing_frac=1 - pl.col("observed") / pl.col("points"),
            freq=pl.col("freq_s").map_elements(format_duration, return_dtype=pl.String),
            unit=pl.col("series_id").replace_strict(units, default=None, return_dtype=pl.String),
        )
        .sort("series_id")
    )
    return report


def quality_plot(grid: pl.DataFrame, path: Path) -> None:
    """Rows = series, columns = time bins; colour = worst state of the bin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    ids = grid["series_id"].unique().sort().head(PLOT_MAX_SERIES)
    t0, t1 = grid["timestamp"].min(), grid["timestamp"].max()
    span = max((t1 - t0).total_seconds(), 1.0) if t0 is not None else 1.0
    state = (
        pl.when(~pl.col("observed") & ((pl.col("flags") & int(Flag.FILLED)) == 0))
        .then(3)
        .when((pl.col("flags") & FAULT_BITS) != 0)
        .then(2)
        .when((pl.col("flags") & int(Flag.FILLED)) != 0)
        .then(1)
        .otherwise(0)
    )
    offset = (pl.col("timestamp") - pl.lit(t0)).dt.total_seconds(fractional=True)
    cells = (
        grid.filter(pl.col("series_id").is_in(ids.implode()))
        .select(
            "series_id",
            bin=(offset / span * (PLOT_BINS - 1)).floor().cast(pl.Int64),
            state=state,
        )
        .group_by("series_id", "bin")
        .agg(pl.col("state").max())
    )
    row_of = {sid: i for i, sid in enumerate(ids.to_list())}
    matrix = np.full((len(row_of), PLOT_BINS), np.nan)
    rows = cells["series_id"].replace_strict(row_of, return_dtype=pl.Int64).to_numpy()
    matrix[rows, cells["bin"].to_numpy()] = cells["state"].to_numpy()
    colours = ListedColormap(["#cfe8cf", "#7fb3e6", "#f0a030", "#d03030"])
    height = 1.0 + 0.22 * len(row_of)
    fig, ax = plt.subplots(figsize=(12, max(2.5, height)))
    ax.imshow(
        matrix,
        aspect="auto",
        interpolation="nearest",
        cmap=colours,
        vmin=-0.5,
        vmax=3.5,
        extent=(0, PLOT_BINS, len(row_of) - 0.5, -0.5),
    )
    ax.set_yticks(range(len(row_of)), list(row_of), fontsize=7)
    ticks = np.linspace(0, PLOT_BINS, 6)
    labels = [
        (t0 + (t1 - t0) * (tick / PLOT_BINS)).strftime("%Y-%m-%d %H:%M") if t0 is not None else ""
        for tick in ticks
    ]
    ax.set_xticks(ticks, labels, fontsize=7)
    ax.set_xlabel("time (UTC)")
    ax.set_title("tsfm ingest: missing and flagged points per series")
    legend = [
        Patch(color=c, label=label)
        for c, label in zip(
            colours.colors,
            ["observed", "filled (not observed)", "flagged fault", "missing"],
            strict=True,
        )
    ]
    ax.legend(handles=legend, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=4, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
