"""Plots a person would rather look at than read: loss vs N, D, C; exponents; α vs horizon."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from tsfm_cli.fit.analysis import Group, is_id
from tsfm_cli.fit.fitting import interval
from tsfm_cli.fit.tables import band, curve_grid

X_LABEL = {
    "N": "parameters N (non-embedding)",
    "D": "training data points D",
    "C": "training compute C (FLOPs)",
}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _tick(v: float, _pos: object = None) -> str:
    exp = np.log10(v) if v > 0 else 0.0
    if abs(exp - round(exp)) < 1e-9 and (v >= 1e4 or v < 1e-2):
        return f"1e{int(round(exp))}"
    return f"{v:.3g}"


def _minor_tick(v: float, _pos: object = None) -> str:
    mantissa = v / 10 ** np.floor(np.log10(v)) if v > 0 else 0.0
    return _tick(v) if any(abs(mantissa - m) < 1e-6 for m in (2, 3, 5)) else ""


def _log_axes(ax, y: bool = True) -> None:
    """Log axes with plain tick labels (mathtext labels made saving ~10× slower); minor labels
    on an axis that spans less than a decade and a half, which would otherwise have none: at
    2, 3 and 5, or every one when the span is under 3× (a CRPS between 0.6 and 0.9 has neither
    a decade nor a 2/3/5 tick inside)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axes = [(ax.xaxis, ax.get_xlim())] + ([(ax.yaxis, ax.get_ylim())] if y else [])
    for axis, (lo, hi) in axes:
        axis.set_major_formatter(FuncFormatter(_tick))
        lo, hi = min(lo, hi), max(lo, hi)
        if lo > 0 and hi / lo < 3:
            axis.set_minor_formatter(FuncFormatter(_tick))
        elif lo > 0 and hi / lo < 30:
            axis.set_minor_formatter(FuncFormatter(_minor_tick))
        else:
            axis.set_minor_formatter(NullFormatter())


def _save(fig, path: Path, dpi: int) -> None:
    """Save with the canvas grown to every label and title (long scenario names or a narrow
    one-architecture figure would otherwise be cut off at the border)."""
    fig.savefig(path, dpi=dpi, bbox_inches="tight", pad_inches=0.15)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", text).strip("_")


def scenario_colors(groups: list[Group]) -> dict[str, Any]:
    """One colour per scenario, the same in every figure of a report: ID black, the drifted
    scenarios in sorted order through a qualitative palette."""
    plt = _plt()
    names = sorted({_scenario(g) for g in groups if not is_id(g)})
    palette = plt.cm.tab10.colors + plt.cm.Dark2.colors
    colors = {_scenario(g): "black" for g in groups if is_id(g)}
    colors.update({n: palette[i % len(palette)] for i, n in enumerate(names)})
    return colors


def _scenario(g: Group) -> str:
    return str(g.keys.get("scenario", "all"))


def _legend_outside(fig, axes) -> None:
    """One legend for the figure, right of the panels (never on top of the data)."""
    seen: dict[str, Any] = {}
    for ax in np.ravel(axes):
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(lab, h)
    if seen:
        fig.legend(
            list(seen.values()),
            list(seen.keys()),
            loc="upper left",
            bbox_to_anchor=(1.0, 0.93),
            fontsize=7,
            frameon=False,
        )


def _draw_law(ax, f, grid: np.ndarray, color, label: str, level: float) -> None:
    """The fitted law: solid over the tested X, dashed where it extrapolates beyond it."""
    inside = grid <= f.points.X[0].max() * (1 + 1e-9)
    loss = f.predict(grid[None, :])
    lo, hi = band(f, grid, level)
    ax.plot(grid[inside], loss[inside], color=color, label=label)
    beyond = ~inside
    if beyond.any():
        edge = max(int(np.flatnonzero(inside).max()) if inside.any() else 0, 0)
        seg = np.r_[edge, np.flatnonzero(beyond)]
        ax.plot(grid[seg], loss[seg], color=color, ls="--", lw=1)
    ax.fill_between(grid[inside], lo[inside], hi[inside], color=color, alpha=0.15, lw=0)


def _extra_key(g: Group) -> tuple:
    return tuple((k, v) for k, v in g.keys.items() if k not in ("arch", "scenario"))


def loss_plots(groups: list[Group], out: Path, law: str, level: float, factor: float) -> list[str]:
    """One figure per metric (× horizon / quality level): a row per X (N, D, C), a column per
    architecture, every scenario in each panel (ID in black) with its points, law and band."""
    plt = _plt()
    written = []
    combos = sorted({(g.metric, _extra_key(g)) for g in groups}, key=str)
    colors = scenario_colors(groups)
    for metric, extra in combos:
        members = [g for g in groups if g.metric == metric and _extra_key(g) == extra]
        archs = sorted({str(g.keys.get("arch", "all")) for g in members})
        # a row only for an X with at least one fitted law here (no empty panels for an X that
        # has too few distinct values, e.g. a sweep with two data budgets)
        xs = [x for x in ("N", "D", "C") if any(g.get(x, law) is not None for g in members)]
        if not xs:
            continue
        fig, axes = plt.subplots(
            len(xs), len(archs), figsize=(max(6.4, 4.8 * len(archs)), 3.6 * len(xs)), squeeze=False
        )
        drew = False
        for row, x in enumerate(xs):
            for ax, arch in zip(axes[row], archs, strict=True):
                scen = [g for g in members if str(g.keys.get("arch", "all")) == arch]
                scen.sort(key=lambda g: (not is_id(g), str(g.keys.get("scenario"))))
                for g in scen:
                    f = g.get(x, law)
                    if f is None:
                        continue
                    drew = True
                    name = _scenario(g)
                    color = colors[name]
                    ax.scatter(f.points.X[0], f.points.y, s=12, color=color, alpha=0.8)
                    grid = curve_grid(f, factor)
                    _draw_law(ax, f, grid, color, name, level)
                ax.set_xscale("log")
                ax.set_yscale("log")
                _log_axes(ax)
                ax.set_xlabel(X_LABEL[x], fontsize=8)
                ax.set_ylabel(metric)
                ax.set_title(arch, fontsize=9)
                ax.grid(True, which="both", alpha=0.2)
        if not drew:
            plt.close(fig)
            continue
        suffix = "".join(f"_{k}={v}" for k, v in extra)
        fig.subplots_adjust(left=0.08, right=0.98, bottom=0.07, top=0.9, hspace=0.5, wspace=0.3)
        fig.suptitle(
            f"{metric}{suffix.replace('_', ' ')}: {law} law, {level:.0%} bands; "
            "dashed = extrapolation beyond the runs",
            y=0.995,
            fontsize=10,
        )
        _legend_outside(fig, axes)
        name = _slug(f"loss_{metric}{suffix}") + ".png"
        _save(fig, out / name, dpi=90)
        plt.close(fig)
        written.append(name)
    return written


def forest_plot(groups: list[Group], out: Path, law: str, level: float) -> list[str]:
    """Exponent α with its interval for every group and X: the slopes side by side."""
    plt = _plt()
    present = {f.x for g in groups for f in g.fits if f.law == law and f.ok}
    xs = [x for x in ("N", "D", "C") if x in present]
    if not xs:
        return []
    labels = [f"{g.label()} · {g.metric}" for g in groups]
    colors = scenario_colors(groups)
    height = 0.3 * len(groups) + 1.4
    fig, axes = plt.subplots(
        1, len(xs), figsize=(3.6 * len(xs) + 2.5, height), squeeze=False, sharey=True
    )
    for ax, x in zip(axes[0], xs, strict=True):
        for i, g in enumerate(groups):
            f = g.get(x, law)
            if f is None:
                continue
            lo, hi = interval(f.boot["alpha"], level)
            color = colors[_scenario(g)]
            ax.plot([lo, hi], [i, i], color=color, lw=2)
            ax.plot(f.coefs["alpha"], i, "o", color=color)
        ax.set_title(f"α of L({x})")
        ax.axvline(0, color="grey", lw=0.5)
        ax.grid(True, axis="x", alpha=0.3)
    axes[0][0].set_yticks(range(len(groups)), labels, fontsize=7)
    axes[0][0].invert_yaxis()
    fig.suptitle(f"exponents ({law} law) with {level:.0%} intervals; colour = scenario, ID black")
    fig.subplots_adjust(
        left=2.5 / fig.get_figwidth(), right=0.98, top=1 - 0.6 / height, bottom=0.5 / height
    )
    _save(fig, out / "exponents.png", dpi=110)
    plt.close(fig)
    return ["exponents.png"]


def horizon_plot(groups: list[Group], out: Path, law: str, level: float) -> list[str]:
    """α of L(N) versus forecast horizon, ID and OOD, a panel per architecture."""
    members = [g for g in groups if "horizon" in g.keys and g.get("N", law) is not None]
    if not members:
        return []
    plt = _plt()
    archs = sorted({str(g.keys.get("arch", "all")) for g in members})
    colors = scenario_colors(groups)
    fig, axes = plt.subplots(1, len(archs), figsize=(5 * len(archs), 4), squeeze=False)
    for ax, arch in zip(axes[0], archs, strict=True):
        lines: dict[tuple, list] = {}
        for g in members:
            if str(g.keys.get("arch", "all")) != arch:
                continue
            rest = tuple((k, v) for k, v in g.keys.items() if k not in ("arch", "horizon"))
            lines.setdefault((g.metric, rest), []).append(g)
        for (metric, rest), gs in sorted(lines.items(), key=lambda kv: str(kv[0])):
            gs.sort(key=lambda g: float(g.keys["horizon"]))
            h = np.array([float(g.keys["horizon"]) for g in gs])
            a = np.array([g.get("N", law).coefs["alpha"] for g in gs])
            ci = np.array([interval(g.get("N", law).boot["alpha"], level) for g in gs])
            err = np.abs(np.stack([a - ci[:, 0], ci[:, 1] - a]))
            err = np.where(np.isfinite(err), err, 0.0)
            name = " ".join(str(v) for _, v in rest) or "all"
            ax.errorbar(
                h,
                a,
                yerr=err,
                marker="o",
                capsize=3,
                color=colors[_scenario(gs[0])],
                label=f"{name} ({metric})",
            )
        ax.set_xscale("log", base=2)
        _log_axes(ax, y=False)
        ax.set_xlabel("forecast horizon (time points)")
        ax.set_ylabel("α of L(N)" + (" (apparent slope)" if law == "power" else ""))
        ax.set_title(arch)
        ax.grid(True, alpha=0.3)
    _legend_outside(fig, axes)
    fig.suptitle(f"α of L(N) vs horizon ({law} law, {level:.0%} intervals; colour = scenario)")
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.13, top=0.85, wspace=0.3)
    _save(fig, out / "horizon.png", dpi=110)
    plt.close(fig)
    return ["horizon.png"]
