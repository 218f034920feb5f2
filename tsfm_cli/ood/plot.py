"""scenarios.png: one clean ID window per drift family, clean vs drifted, for people to look at."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from tsfm_cli.drift import apply_drift, window_spread
from tsfm_cli.ood.windows import Block, rng_for


def plot_scenarios(
    path: Path,
    base: Block | None,
    families: list[str],
    severity: float,
    onset: int,
    context: int,
    seed: int,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 2 if len(families) > 1 else 1
    rows = max(1, math.ceil(len(families) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 2.1 * rows), squeeze=False)
    for ax in axes.ravel()[len(families) :]:
        ax.axis("off")
    if base is None or base.n == 0 or not families:
        axes[0, 0].text(0.5, 0.5, "no ID window to show", ha="center", va="center")
        axes[0, 0].axis("off")
        fig.savefig(path, dpi=80)
        plt.close(fig)
        return
    row = int(np.argmax(base.observed.sum(axis=1)))  # the most complete window
    clean_v, clean_o = base.values[row : row + 1], base.observed[row : row + 1]
    spread = window_spread(clean_v[:, :context], clean_o[:, :context])
    t = np.arange(clean_v.shape[1]) - context
    for ax, family in zip(axes.ravel(), families, strict=False):
        values, observed = apply_drift(
            family,
            clean_v,
            clean_o,
            severity,
            onset=onset,
            spread=spread,
            rng=rng_for(seed, "plot", family),
        )
        ax.plot(t, clean_v[0], color="0.6", lw=0.8, label="clean")
        ax.plot(t, values[0], color="tab:red", lw=0.8, label=f"{family}:{severity:g}")
        lost = clean_o[0] & ~observed[0]
        if lost.any():
            ax.plot(t[lost], clean_v[0][lost], "x", color="tab:blue", ms=2, label="now missing")
        ax.axvline(onset - context, color="tab:orange", ls="--", lw=0.8)
        ax.axvline(0, color="k", lw=0.8)
        ax.set_title(f"{family} (severity {severity:g})", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="upper left")
    fig.suptitle(
        "drift families on one ID window (black: forecast start, orange: onset)", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
