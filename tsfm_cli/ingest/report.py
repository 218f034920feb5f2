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
    """One row per series over its own time span; colour = worst state in each time bin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    ids = grid["series_id"].unique().sort().head(PLOT_MAX_SERIES)
    state = (  # the worst state in a bin wins: fault > missing > filled > observed
        pl.when((pl.col("flags") & FAULT_BITS) != 0)
        .then(3)
        .when(~pl.col("observed") & ((pl.col("flags") & int(Flag.FILLED)) == 0))
        .then(2)
        .when((pl.col("flags") & int(Flag.FILLED)) != 0)
        .then(1)
        .otherwise(0)
    )
    position = pl.int_range(pl.len()).over("series_id") / pl.len().over("series_id")
    cells = (
        grid.filter(pl.col("series_id").is_in(ids.implode()))
        .select("series_id", bin=(position * PLOT_BINS).floor().cast(pl.Int64), state=state)
        .group_by("series_id", "bin")
        .agg(pl.col("state").max())
    )
    spans = grid.group_by("series_id").agg(
        start=pl.col("timestamp").min(), end=pl.col("timestamp").max()
    )
    span_of = {r["series_id"]: (r["start"], r["end"]) for r in spans.iter_rows(named=True)}
    row_of = {sid: i for i, sid in enumerate(ids.to_list())}
    matrix = np.full((len(row_of), PLOT_BINS), np.nan)
    rows = cells["series_id"].replace_strict(row_of, return_dtype=pl.Int64).to_numpy()
    matrix[rows, cells["bin"].to_numpy()] = cells["state"].to_numpy()
    colours = ListedColormap(["#cfe8cf", "#7fb3e6", "#d03030", "#f0a030"])
    height = 1.6 + 0.22 * len(row_of)
    fig, ax = plt.subplots(figsize=(13, height))
    ax.imshow(matrix, aspect="auto", interpolation="nearest", cmap=colours, vmin=-0.5, vmax=3.5)
    ax.set_yticks(range(len(row_of)), list(row_of), fontsize=7)
    ax.set_xticks([])
    fmt = "%Y-%m-%d %H:%M"
    for sid, row in row_of.items():
        start, end = span_of[sid]
        ax.text(PLOT_BINS + 4, row, f"{start:{fmt}} → {end:{fmt}} UTC", va="center", fontsize=6)
    ax.set_xlabel("each row spans its series' own time range (shown on the right)", fontsize=8)
    ax.set_title("tsfm ingest: missing and flagged points per series", fontsize=10)
    legend = [
        Patch(color=c, label=label)
        for c, label in zip(
            colours.colors,
            [
                "observed",
                "filled (not observed)",
                "missing / not usable",
                "fault (range, spike, stuck, conflict)",
            ],
            strict=True,
        )
    ]
    ax.legend(handles=legend, loc="upper center", bbox_to_anchor=(0.5, -0.04), ncol=4, fontsize=7)
    inch = 1 / fig.get_figheight()
    fig.subplots_adjust(left=0.2, right=0.8, top=1 - 0.4 * inch, bottom=0.7 * inch)
    fig.savefig(path, dpi=100)
    plt.close(fig)
