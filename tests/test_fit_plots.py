"""The fit plots on a sweep shaped like a small real one: one architecture, only two data budgets
(no L(D) law), long scenario names. Nothing may be cut off at the image border, and an X without
a single fitted law gets no (empty) row of panels."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pytest

from tsfm_cli.fit import FitConfig, run_fit
from tsfm_cli.fit.synth import synth_results

LAWS = {
    "id": (0.1, 200.0, 0.35, 300.0, 0.3),
    "heldout:machine=compressor_station_12": (0.1, 200.0, 0.2, 300.0, 0.3),
    "missing_bursts:3": (0.1, 200.0, 0.15, 300.0, 0.3),
}


@pytest.fixture(scope="module")
def laws_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("fitplots")
    frame = synth_results(LAWS, data=(1e5, 1e6), horizons=[32], noise=0.01)
    frame.write_parquet(root / "results.parquet")
    out = root / "laws"
    run_fit([root / "results.parquet"], out, FitConfig(n_boot=40, extrapolation=False))
    return out


def _border_is_blank(image: np.ndarray, width: int = 2) -> bool:
    rgb = image[..., :3]
    frame = np.concatenate(
        [
            rgb[:width].reshape(-1, 3),
            rgb[-width:].reshape(-1, 3),
            rgb[:, :width].reshape(-1, 3),
            rgb[:, -width:].reshape(-1, 3),
        ]
    )
    return bool((frame > 0.95).all())


def test_no_text_is_cut_off_at_the_border(laws_dir):
    pngs = sorted(laws_dir.glob("*.png"))
    assert {"exponents.png"} <= {p.name for p in pngs} and any(
        p.name.startswith("loss_") for p in pngs
    )
    for png in pngs:
        assert _border_is_blank(mpimg.imread(png)), f"{png.name}: ink touches the border"


def test_an_x_without_a_fitted_law_gets_no_empty_row(laws_dir):
    (loss_png,) = laws_dir.glob("loss_*.png")
    height_in = mpimg.imread(loss_png).shape[0] / 90  # saved at 90 dpi; 3.6 inches per row
    assert height_in < 2.5 * 3.6, f"{height_in:.1f} in: a row for D, which has no law"


@pytest.mark.parametrize(("lo", "hi"), [(0.6, 0.9), (0.55, 1.2), (0.3, 4.0), (1e-3, 10.0)])
def test_a_narrow_log_axis_still_has_labelled_ticks(lo, hi):
    """A CRPS between 0.6 and 0.9 (SKAB) holds no decade and no 2/3/5 tick: the y axis had no
    numbers at all."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tsfm_cli.fit.plots import _log_axes

    fig, ax = plt.subplots()
    ax.set_yscale("log")
    ax.set_xscale("log")
    ax.set_ylim(lo, hi)
    ax.set_xlim(1e3, 1e5)
    _log_axes(ax)
    fig.canvas.draw()
    labels = [
        t.get_text()
        for t in ax.yaxis.get_ticklabels(which="both")
        if t.get_text() and lo <= t.get_position()[1] <= hi
    ]
    plt.close(fig)
    assert len(labels) >= 2, labels


def test_each_scenario_keeps_one_colour_and_id_is_black():
    from tsfm_cli.fit.analysis import Group
    from tsfm_cli.fit.plots import scenario_colors

    groups = [Group({"arch": a, "scenario": s}, "crps") for a in ("e", "d") for s in LAWS]
    colors = scenario_colors(groups)
    assert colors["id"] == "black"
    assert len({str(c) for c in colors.values()}) == len(LAWS)
    assert scenario_colors(groups[::-1]) == colors  # whatever order a figure meets them in


def test_the_law_is_dashed_beyond_the_largest_run():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tsfm_cli.fit.fitting import fit_law, run_counts
    from tsfm_cli.fit.plots import _draw_law
    from tsfm_cli.fit.select import Points

    N = np.geomspace(1e3, 1e6, 6)
    pts = Points(N[None, :], (1e2 / N) ** 0.3, np.array([f"r{i}" for i in range(6)]), "t")
    uniq, counts = run_counts(pts.runs, 30, 0)
    f = fit_law(pts, "N", "power", uniq_runs=uniq, counts=counts)
    fig, ax = plt.subplots()
    _draw_law(ax, f, np.geomspace(5e2, 1e7, 40), "black", "id", 0.95)
    solid = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-"]
    dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    plt.close(fig)
    assert len(solid) == 1 and len(dashed) == 1
    assert solid[0].get_xdata().max() <= 1e6 * (1 + 1e-9)
    assert dashed[0].get_xdata().min() <= 1e6 < dashed[0].get_xdata().max() == pytest.approx(1e7)
