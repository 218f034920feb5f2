"""`bench.png`: strategy × scenario heatmap of the chosen metric (mean over seeds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl


def heatmap(summary: pl.DataFrame, metric: str, path: Path) -> Path:
    """Colour = the metric relative to the best strategy of each scenario (1 = best), so scenarios
    of different difficulty share one scale; the cells are annotated with the metric itself and
    the best cell of each column (and those tied with it) is outlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    part = summary.filter((pl.col("metric") == metric) & (pl.col("level") == "scenario"))
    scenarios = _scenario_order(part["group"].unique().to_list())
    strategies = (
        summary.filter((pl.col("metric") == metric) & (pl.col("level") == "ood"))
        .sort("mean", nulls_last=True)["strategy"]
        .to_list()
    )
    strategies += sorted(set(part["strategy"]) - set(strategies))
    grid = np.full((len(strategies), len(scenarios)), np.nan)
    best = np.zeros_like(grid, dtype=bool)
    for row in part.iter_rows(named=True):
        i, j = strategies.index(row["strategy"]), scenarios.index(row["group"])
        grid[i, j] = row["mean"] if row["mean"] is not None else np.nan
        best[i, j] = bool(row["best"])
    column_best = np.nanmin(np.where(np.isfinite(grid), grid, np.inf), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = grid / np.where(column_best > 0, column_best, np.nan)

    width = max(6.0, 0.9 * len(scenarios) + 3)
    height = max(3.0, 0.45 * len(strategies) + 1.8)
    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    shown = np.ma.masked_invalid(relative)
    # log colours from the best (1) to at most 4× the best, so one very bad strategy does not
    # flatten the differences between the others
    finite = relative[np.isfinite(relative)]
    top = float(np.clip(finite.max() if finite.size else 2.0, 1.1, 4.0))
    cmap = plt.get_cmap("viridis_r")
    norm = LogNorm(vmin=1.0, vmax=top, clip=True)
    image = ax.imshow(shown, cmap=cmap, norm=norm, aspect="auto")
    for i in range(len(strategies)):
        for j in range(len(scenarios)):
            if np.isfinite(grid[i, j]):
                r, g, b, _ = cmap(norm(relative[i, j]))
                dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
                ax.text(
                    j,
                    i,
                    f"{grid[i, j]:.3g}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if dark else "black",
                )
            if best[i, j]:
                ax.add_patch(
                    plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=1.5, edgecolor="red")
                )
    ax.set_xticks(range(len(scenarios)), scenarios, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(strategies)), strategies, fontsize=8)
    ax.set_title(
        f"{metric} per strategy and scenario (mean over seeds; red: best or not distinguishable)",
        fontsize=9,
    )
    bar = fig.colorbar(image, ax=ax, label=f"{metric} ÷ best of the scenario", extend="max")
    ticks = [t for t in (1.0, 1.25, 1.5, 2.0, 3.0, 4.0) if t <= top]
    bar.set_ticks(ticks, labels=[f"{t:g}×" for t in ticks])
    bar.minorticks_off()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def _scenario_order(names: list[str]) -> list[str]:
    """`id` first, then the natural scenarios, then synthetic ones by family and severity."""

    def key(name: str):
        if name == "id":
            return (0, "", 0.0)
        family, _, severity = name.partition(":")
        try:
            return (2, family, float(severity))
        except ValueError:
            return (1, name, 0.0)

    return sorted(names, key=key)
