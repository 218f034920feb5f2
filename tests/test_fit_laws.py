"""The law forms and their fitting: recovery of known laws, polyfit, bootstrap coverage."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy.optimize import minimize_scalar

from tsfm_cli.fit import analysis, laws
from tsfm_cli.fit.fitting import fit_law, run_counts
from tsfm_cli.fit.select import Points, frontier, select_points

SIZES = np.geomspace(1e3, 1e8, 8)


def _points(X, y, runs=None):
    X = np.atleast_2d(np.asarray(X, dtype=float))
    runs = np.array([f"r{i}" for i in range(X.shape[1])]) if runs is None else runs
    return Points(X, np.asarray(y, dtype=float), runs, "test")


def _fit(points, x, law, n_boot=200, seed=0):
    uniq, counts = run_counts(points.runs, n_boot, seed)
    return fit_law(points, x, law, uniq_runs=uniq, counts=counts)


def test_pure_power_law_matches_numpy_polyfit():
    rng = np.random.default_rng(0)
    logx = np.log(SIZES)
    logy = -0.27 * logx + 1.3 + rng.normal(0, 0.05, logx.size)
    slope, icpt = np.polyfit(logx, logy, 1)
    got = laws.power_lstsq(logx, logy)[0]
    np.testing.assert_allclose(got, [slope, icpt], rtol=1e-10)
    fit = _fit(_points(SIZES, np.exp(logy)), "N", "power")
    assert fit.coefs["alpha"] == pytest.approx(-slope, rel=1e-10)
    assert np.log(fit.coefs["X_c"]) == pytest.approx(icpt / -slope, rel=1e-10)
    # weighted rows equal polyfit on the repeated points
    w = np.array([2, 0, 1, 1, 3, 1, 0, 1], dtype=float)
    rep = np.repeat(np.arange(logx.size), w.astype(int))
    np.testing.assert_allclose(
        laws.power_lstsq(logx, logy, w[None, :])[0], np.polyfit(logx[rep], logy[rep], 1)
    )


def test_pure_power_law_recovers_known_exponent():
    rng = np.random.default_rng(1)
    y = (1e2 / SIZES) ** 0.3 * np.exp(rng.normal(0, 0.01, SIZES.size))
    fit = _fit(_points(SIZES, y), "N", "power")
    assert fit.coefs["alpha"] == pytest.approx(0.3, abs=0.01)
    assert fit.coefs["X_c"] == pytest.approx(1e2, rel=0.3)
    lo, hi = np.nanpercentile(fit.boot["alpha"], [2.5, 97.5])
    assert lo < 0.3 < hi and hi - lo < 0.05
    assert fit.r2 > 0.99 and abs(fit.extrap_rel_err) < 0.05


def test_power_law_with_irreducible_term_recovers_coefficients():
    rng = np.random.default_rng(2)
    N = np.geomspace(1e3, 1e9, 10)
    y = (0.5 + (3e3 / N) ** 0.4) * np.exp(rng.normal(0, 0.003, N.size))
    fit = _fit(_points(N, y), "N", "power_e")
    assert fit.converged
    assert fit.coefs["E"] == pytest.approx(0.5, rel=0.05)
    assert fit.coefs["alpha"] == pytest.approx(0.4, rel=0.08)
    assert fit.coefs["X_c"] == pytest.approx(3e3, rel=0.3)
    assert fit.boot_ok > 0.8


def test_joint_law_recovers_coefficients():
    rng = np.random.default_rng(3)
    Ng, Dg = np.meshgrid(np.geomspace(1e4, 1e8, 5), np.geomspace(1e5, 1e9, 5))
    N, D = Ng.ravel(), Dg.ravel()
    y = (0.3 + 40 / N**0.35 + 500 / D**0.28) * np.exp(rng.normal(0, 0.003, N.size))
    fit = _fit(_points(np.stack([N, D]), y), "N,D", "joint")
    assert fit.converged
    c = fit.coefs
    assert c["alpha"] == pytest.approx(0.35, abs=0.03)
    assert c["beta"] == pytest.approx(0.28, abs=0.03)
    assert c["E"] == pytest.approx(0.3, abs=0.05)
    derived = analysis.derived(fit, 10.0)
    a_opt = derived["a_opt"][0]
    assert a_opt == pytest.approx(c["beta"] / (c["alpha"] + c["beta"]))


def test_batched_solver_reaches_the_lbfgs_minimum():
    rng = np.random.default_rng(4)
    N = np.geomspace(1e3, 1e8, 9)
    y = (0.2 + (1e3 / N) ** 0.35) * np.exp(rng.normal(0, 0.02, N.size))
    form = laws.make_eform(np.log(N)[None, :], y)
    full = laws.fit_huber_grid(form, y)
    w = rng.multinomial(N.size, np.full(N.size, 1 / N.size), size=8).astype(float)
    batched = laws.fit_huber_batched(form, y, np.repeat(full.theta, 8, axis=0), w)
    for i in range(8):
        one = laws.fit_huber(form, y, batched.theta[i][None, :], w[i][None, :])
        assert batched.loss[i] <= one.loss[0] * (1 + 1e-6) + 1e-12


def test_bootstrap_intervals_cover_the_truth_at_about_the_nominal_rate():
    # Vectorised: 300 data sets × 300 resamples of the pure power law on 10 sizes.
    rng = np.random.default_rng(5)
    N = np.geomspace(1e3, 1e8, 10)
    hits = 0
    for _ in range(300):
        y = (1e2 / N) ** 0.3 * np.exp(rng.normal(0, 0.03, N.size))
        w = rng.multinomial(N.size, np.full(N.size, 0.1), size=300)
        alpha = laws.power_coefs(laws.power_lstsq(np.log(N), np.log(y), w))["alpha"]
        lo, hi = np.nanpercentile(alpha, [2.5, 97.5])
        hits += lo <= 0.3 <= hi
    assert 0.85 <= hits / 300 <= 0.99


def test_bootstrap_coverage_of_the_robust_fit():
    rng = np.random.default_rng(6)
    N = np.geomspace(1e3, 1e9, 10)
    hits, draws = 0, 60
    for i in range(draws):
        y = (0.4 + (1e3 / N) ** 0.35) * np.exp(rng.normal(0, 0.01, N.size))
        fit = _fit(_points(N, y), "N", "power_e", n_boot=150, seed=i)
        lo, hi = np.nanpercentile(fit.boot["alpha"], [2.5, 97.5])
        hits += lo <= 0.35 <= hi
    assert 0.75 <= hits / draws <= 1.0


def test_compute_frontier_on_a_hand_made_example():
    frame = pl.DataFrame(
        {
            "run_id": ["a", "a", "a", "b", "b", "b", "c", "c"],
            "step": [1, 2, 3, 1, 2, 3, 1, 2],
            "flops": [1.0, 2.0, 4.0, 2.0, 4.0, 8.0, 3.0, 8.0],
            "crps": [5.0, 4.0, 3.5, 4.5, 3.0, 2.0, 3.9, 2.5],
        }
    )
    env = frontier(frame, "crps")
    # C=1: 5 (a) · C=2: 4 (a beats b's 4.5) · C=3: 3.9 (c) · C=4: 3 (b) · C=8: 2 (b)
    assert env["flops"].to_list() == [1.0, 2.0, 3.0, 4.0, 8.0]
    assert env["crps"].to_list() == [5.0, 4.0, 3.9, 3.0, 2.0]
    assert env["run_id"].to_list() == ["a", "a", "c", "b", "b"]


def test_row_selection_rules():
    frame = pl.DataFrame(
        {
            "run_id": ["s1", "s1", "s2", "s3", "s4"],
            "step": [1, 2, 1, 1, 1],
            "params": [10.0, 10.0, 20.0, 40.0, 40.0],
            "data_points": [100.0, 100.0, 100.0, 100.0, 50.0],
            "flops": [1.0, 2.0, 2.0, 4.0, 2.0],
            "crps": [2.0, 1.5, 1.2, 1.0, 1.4],
        }
    )
    pn = select_points(frame, "crps", "N")
    assert sorted(pn.X[0].tolist()) == [10.0, 20.0, 40.0]  # s4 is not at the largest D
    assert 1.5 in pn.y.tolist() and 2.0 not in pn.y.tolist()  # best checkpoint of s1
    pd = select_points(frame, "crps", "D")
    assert sorted(pd.X[0].tolist()) == [50.0, 100.0]  # runs of the largest N
    last = select_points(frame, "crps", "N", checkpoint="last", n_rows="all")
    assert last.X.shape[1] == 4


def test_too_few_distinct_x_is_a_row_not_a_crash():
    fit = _fit(_points([1e3, 1e3, 1e4], [1.0, 1.1, 0.8]), "N", "power_e")
    assert not fit.ok and "2 distinct" in fit.note


def test_non_positive_losses_make_the_pure_law_refuse():
    N = np.geomspace(1e3, 1e8, 8)
    nll = -0.5 + (1e3 / N) ** 0.3  # crosses zero
    pts = _points(N, nll)
    pure = _fit(pts, "N", "power")
    assert not pure.ok  # refused, not fitted to the positive part
    assert pure.refused_nonpositive == int(np.sum(nll <= 0)) > 0
    assert pure.note.startswith("refused") and "E-form" in pure.note
    robust = _fit(pts, "N", "power_e")
    assert robust.space == "loss" and robust.n_points == N.size
    assert robust.coefs["E"] == pytest.approx(-0.5, abs=0.02)
    assert robust.coefs["alpha"] == pytest.approx(0.3, abs=0.03)


def test_compute_optimal_allocation_matches_brute_force():
    c = {k: np.array([v]) for k, v in dict(E=0.2, A=40.0, alpha=0.34, B=400.0, beta=0.28).items()}
    budget, k = 1e15, 0.5
    n_opt, d_opt = analysis.optimum(c, budget, k)

    def loss_at(log_n):
        n = np.exp(log_n)
        return float(analysis.joint_loss(c, np.array([n]), np.array([budget / (6 * k * n)]))[0])

    best = minimize_scalar(loss_at, bounds=(0, 40), method="bounded", options={"xatol": 1e-10})
    assert np.log(n_opt[0]) == pytest.approx(best.x, abs=1e-4)
    assert n_opt[0] * d_opt[0] * 6 * k == pytest.approx(budget)
    needed = analysis.budget_for_loss(c, loss_at(best.x), k)
    assert needed[0] == pytest.approx(budget, rel=1e-6)
    assert np.isnan(analysis.budget_for_loss(c, 0.1, k)[0])  # below E: unreachable


def test_bootstrap_resamples_are_paired_across_groups_with_the_same_runs():
    runs = np.array(["r3", "r1", "r2", "r1", "r4"])
    uniq, a = run_counts(runs, 50, seed=7)
    _, b = run_counts(runs[::-1], 50, seed=7)  # same runs, other order (another scenario)
    assert uniq.tolist() == ["r1", "r2", "r3", "r4"]
    np.testing.assert_array_equal(a, b)
    assert np.all(a.sum(axis=1) == 4)  # each resample draws as many runs as there are
    _, c = run_counts(np.array(["x1", "x2", "x3", "x4"]), 50, seed=7)
    _, d = run_counts(runs, 50, seed=8)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)


def test_worker_processes_give_the_same_fits(monkeypatch):
    from tsfm_cli.fit import fitting

    rng = np.random.default_rng(9)
    tasks = []
    for g in range(3):
        N = np.geomspace(1e3, 1e8, 7)
        y = (0.3 + (1e3 / N) ** (0.3 + 0.02 * g)) * np.exp(rng.normal(0, 0.01, N.size))
        pts = _points(N, y)
        uniq, counts = run_counts(pts.runs, 50, seed=g)
        tasks.append(fitting.GroupTask([(pts, "N", "power"), (pts, "N", "power_e")], uniq, counts))
    one = fitting.fit_many(tasks, workers=1)
    monkeypatch.setattr(fitting, "PARALLEL_MIN_WORK", 0)
    two = fitting.fit_many(tasks, workers=2)
    for a, b in zip([f for g in one for f in g], [f for g in two for f in g], strict=True):
        assert a.coefs == b.coefs
        for k in a.boot:
            np.testing.assert_array_equal(a.boot[k], b.boot[k])
