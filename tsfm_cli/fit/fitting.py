"""Fitting one law to one group's points: full fit, bootstrap over runs, honesty checks."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from tsfm_cli.fit import laws
from tsfm_cli.fit.blas import single_thread
from tsfm_cli.fit.select import Points

MIN_DISTINCT = 3  # a law needs at least this many distinct X (per input for the joint law)
LAW_PARAMS = {"power": 2, "power_e": 3, "joint": 5}
NONPOSITIVE_HINT = "read the E-form laws (power_e, joint: E in loss units) or fit CRPS"


@dataclass
class LawFit:
    """One law fitted to one group: coefficients, bootstrap samples and goodness of fit."""

    x: str
    law: str
    points: Points
    n_points: int = 0
    coefs: dict[str, float] = field(default_factory=dict)
    boot: dict[str, np.ndarray] = field(default_factory=dict)  # coef → [B] (NaN: unusable)
    theta: np.ndarray | None = None  # E-forms: the full-fit parameters [1, k]
    boot_theta: np.ndarray | None = None  # E-forms: [B, k]
    form: laws.EForm | None = None
    space: str = "log"
    r2: float = float("nan")
    rmse: float = float("nan")
    converged: bool = False
    boot_ok: float = float("nan")  # share of resamples that gave a usable, converged fit
    extrap_x: float = float("nan")
    extrap_rel_err: float = float("nan")
    refused_nonpositive: int = 0  # pure power law: losses ≤ 0 that made it refuse
    note: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.coefs)

    def predict(self, X: np.ndarray, boot: bool = False) -> np.ndarray:
        """Loss at inputs X [m, p] → [p] (or [B, p] from the bootstrap samples)."""
        X = np.atleast_2d(np.asarray(X, dtype=float))
        if self.law == "power":
            alpha = self.boot["alpha"] if boot else np.array([self.coefs["alpha"]])
            xc = self.boot["X_c"] if boot else np.array([self.coefs["X_c"]])
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                out = np.exp(alpha[:, None] * (np.log(xc)[:, None] - np.log(X[0])[None, :]))
        else:
            theta = self.boot_theta if boot else self.theta
            U = np.log(X) - self.form.x0[:, None]
            out = self.form.predict(theta, U)
        return out if boot else out[0]


def _rng(uniq: np.ndarray, seed: int, salt: str = "") -> np.random.Generator:
    digest = hashlib.sha256(("\x1f".join(uniq) + f"\x1e{seed}{salt}").encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def run_counts(
    all_runs: np.ndarray, n_boot: int, seed: int, configs: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap over runs: counts [B, R] for the sorted unique runs of a group.

    With `configs` (each run's configuration: the run without its seed), two stages: draw
    configurations with replacement, then, for every configuration drawn, its seeds with
    replacement — seed-to-seed noise enters the interval instead of being averaged away.

    The generator is seeded from the group's run set, so groups holding the same runs (one run
    evaluated on ID and on OOD scenarios) get the same resamples: their differences are paired.
    """
    runs = all_runs.astype(str)
    uniq, first = np.unique(runs, return_index=True)
    rng = _rng(uniq, seed)
    if configs is None:
        counts = rng.multinomial(uniq.size, np.full(uniq.size, 1.0 / uniq.size), size=n_boot)
        return uniq, counts.astype(float)
    conf = np.asarray(configs).astype(str)[first]
    cuniq, cidx = np.unique(conf, return_inverse=True)
    ccounts = rng.multinomial(cuniq.size, np.full(cuniq.size, 1.0 / cuniq.size), size=n_boot)
    counts = np.zeros((n_boot, uniq.size))
    for c in range(cuniq.size):
        members = np.flatnonzero(cidx == c)
        s = members.size
        if s == 1:
            counts[:, members[0]] = ccounts[:, c]
            continue
        # ccounts[b, c] copies of the configuration, each drawing s seeds with replacement
        counts[:, members] = rng.multinomial(ccounts[:, c] * s, np.full(s, 1.0 / s))
    return uniq, counts


def noisy_y(points: Points, n_boot: int, seed: int, salt: str = "") -> np.ndarray | None:
    """Per resample, each point's metric redrawn from its evaluation windows [B, n], or None.

    The window level of the hierarchical bootstrap in its normal (CLT) form: a point is a mean
    over windows, so a resample of its windows moves it by z·se with se the standard error of
    that mean (windows clustered by series, see load.window_errors). Positive losses move on
    the log scale (y·exp(z·se/y)) so they stay positive; others in loss units.
    """
    if points.se is None or not np.any(np.isfinite(points.se) & (points.se > 0)):
        return None
    se = np.where(np.isfinite(points.se), points.se, 0.0)
    # seeded by the group (`salt`): the ID and OOD groups of one run hold different windows,
    # so their window noise must be drawn independently (their run draws stay paired)
    rng = _rng(np.unique(points.runs.astype(str)), seed, salt=f"windows{salt}{points.rule}")
    z = rng.standard_normal((n_boot, points.y.size))
    if np.all(points.y > 0):
        return points.y[None, :] * np.exp(z * (se / points.y)[None, :])
    return points.y[None, :] + z * se[None, :]


def _weights(points: Points, uniq: np.ndarray, counts: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(uniq, points.runs.astype(str))
    return counts[:, idx]


def _distinct_ok(X: np.ndarray, w: np.ndarray, need: int) -> np.ndarray:
    """Per resample: does every input keep at least `need` distinct values with weight > 0?"""
    ok = np.ones(w.shape[0], dtype=bool)
    for row in X:
        _, inv = np.unique(row, return_inverse=True)
        onehot = np.zeros((row.size, inv.max() + 1))
        onehot[np.arange(row.size), inv] = 1.0
        ok &= (((w > 0).astype(float) @ onehot) > 0).sum(axis=1) >= need
    return ok


def too_few(points: Points) -> str:
    names = ["N", "D"] if points.X.shape[0] == 2 else ["X"]
    for name, row in zip(names, points.X, strict=True):
        distinct = np.unique(row).size
        if distinct < MIN_DISTINCT:
            return f"only {distinct} distinct {name} (need ≥ {MIN_DISTINCT}); not fitted"
    return ""


def fit_law(
    points: Points,
    x: str,
    law: str,
    *,
    uniq_runs: np.ndarray,
    counts: np.ndarray,
    extrapolate: bool = True,
    seed: int = 0,
    salt: str = "",
) -> LawFit:
    """Full fit, bootstrap and checks of `law` on `points`; never raises on thin data."""
    fit = LawFit(x=x, law=law, points=points)
    keep = np.isfinite(points.y)
    se = None if points.se is None else points.se[keep]
    pts = Points(points.X[:, keep], points.y[keep], points.runs[keep], points.rule, se)
    fit.points, fit.n_points = pts, int(keep.sum())
    if law == "power" and np.any(pts.y <= 0):
        # never fit the positive part only: dropping the negative losses bends the slope
        fit.refused_nonpositive = int(np.sum(pts.y <= 0))
        fit.note = (
            f"refused: {fit.refused_nonpositive} of {fit.n_points} losses ≤ 0 (e.g. scaled NLL); "
            f"the pure power law needs positive losses: {NONPOSITIVE_HINT}"
        )
        return fit
    reason = too_few(pts)
    if reason:
        fit.note += reason
        return fit
    w = _weights(pts, uniq_runs, counts)
    exact = law != "power" and np.unique(pts.X, axis=1).shape[1] <= LAW_PARAMS[law]
    n_runs = np.unique(pts.runs.astype(str)).size
    if n_runs < MIN_DISTINCT and not exact:
        w = w[:0]
        fit.note += (
            f"points from only {n_runs} run(s): no interval (the bootstrap resamples runs); "
        )
        exact = True
    elif exact:
        # as many distinct points as coefficients: the law interpolates, resamples say nothing
        w = w[:0]
        fit.note += (
            f"exactly determined ({fit.n_points} points, {LAW_PARAMS[law]} coefficients): "
            "no interval; "
        )
    yb = noisy_y(pts, w.shape[0], seed, salt) if w.shape[0] else None
    if law == "power":
        _fit_power(fit, pts, w, yb)
    else:
        _fit_eform(fit, pts, w, yb)
    if exact:  # same shapes as any other fit, every resample unusable
        n_boot = counts.shape[0]
        fit.boot = {k: np.full(n_boot, np.nan) for k in fit.coefs}
        if fit.theta is not None:
            fit.boot_theta = np.full((n_boot, fit.theta.shape[1]), np.nan)
    if extrapolate:
        _extrapolation(fit, pts)
    return fit


def _fit_power(fit: LawFit, pts: Points, w: np.ndarray, yb: np.ndarray | None) -> None:
    logx, logy = np.log(pts.X[0]), np.log(pts.y)
    full = laws.power_lstsq(logx, logy)
    fit.coefs = {k: float(v[0]) for k, v in laws.power_coefs(full).items()}
    usable = _distinct_ok(pts.X, w, 2)
    boot = laws.power_coefs(laws.power_lstsq(logx, logy if yb is None else np.log(yb), w))
    fit.boot = {k: np.where(usable, v, np.nan) for k, v in boot.items()}
    fit.boot_ok = float(usable.mean()) if usable.size else float("nan")
    pred = np.exp(full[0, 1] + full[0, 0] * logx)
    fit.r2, fit.rmse = laws.log_space_fit_stats(pred, pts.y, True)
    fit.converged = True  # closed form


def _fit_eform(fit: LawFit, pts: Points, w: np.ndarray, yb: np.ndarray | None) -> None:
    form = laws.make_eform(np.log(pts.X), pts.y)
    fit.form, fit.space = form, "log" if form.positive else "loss"
    res = laws.fit_huber_grid(form, pts.y)
    fit.theta, fit.converged = res.theta, bool(res.converged[0])
    fit.coefs = {k: float(v[0]) for k, v in form.coefs(res.theta).items()}
    if not fit.converged:
        fit.note += f"full fit did not converge ({res.message or 'gradient not small'}); "
    boot = laws.fit_huber_batched(
        form,
        pts.y if yb is None else yb,
        np.repeat(res.theta, w.shape[0], axis=0),
        w,
        maxiter=laws.BOOT_STEPS,
        max_fallback=0,
        stall=laws.BOOT_STALL,
        ftol=laws.BOOT_FTOL,
    )
    usable = boot.converged & _distinct_ok(pts.X, w, MIN_DISTINCT)
    fit.boot_theta = np.where(usable[:, None], boot.theta, np.nan)
    fit.boot = {k: np.where(usable, v, np.nan) for k, v in form.coefs(boot.theta).items()}
    fit.boot_ok = float(usable.mean()) if usable.size else float("nan")
    if w.shape[0] and fit.boot_ok < 0.9:
        fit.note += f"only {fit.boot_ok:.0%} of bootstrap resamples usable; "
    pred = form.predict(res.theta)[0]
    fit.r2, fit.rmse = laws.log_space_fit_stats(pred, pts.y, form.positive)


def _extrapolation(fit: LawFit, pts: Points) -> None:
    """Fit without the points at the largest X (largest N for the joint law), predict them."""
    top = pts.X[0].max()
    held = pts.X[0] == top
    rest = Points(pts.X[:, ~held], pts.y[~held], pts.runs[~held], pts.rule)
    if too_few(rest):
        fit.note += "no extrapolation check (< 3 X without the largest); "
        return
    one = np.ones((1, rest.y.size))
    if fit.law == "power":
        c = laws.power_lstsq(np.log(rest.X[0]), np.log(rest.y), one)
        pred = np.exp(c[0, 1] + c[0, 0] * np.log(pts.X[0, held]))
    else:
        form = laws.make_eform(np.log(rest.X), rest.y)
        if fit.theta is not None and form.positive == fit.form.positive:
            # warm start from the full fit, moved to the new centre: c' = c − e·(x0' − x0)
            start = fit.theta.copy()
            for j in range(form.U.shape[0]):
                start[:, 1 + 2 * j] -= start[:, 2 + 2 * j] * (form.x0[j] - fit.form.x0[j])
            res = laws.fit_huber(form, rest.y, start)
        else:
            res = laws.fit_huber_grid(form, rest.y)
        pred = form.predict(res.theta, np.log(pts.X[:, held]) - form.x0[:, None])[0]
    obs = pts.y[held]
    fit.extrap_x = float(top)
    fit.extrap_rel_err = float(np.mean((pred - obs) / np.abs(obs)))


@dataclass
class GroupTask:
    """Every law of one group: its points, and the group's bootstrap counts (shared)."""

    laws: list[tuple[Points, str, str]]  # (points, x, law)
    uniq: np.ndarray
    counts: np.ndarray
    extrapolate: bool = True
    seed: int = 0
    salt: str = ""  # the group's identity, for its window-level draws


# resamples × laws below which one process beats starting workers (tests, small sweeps)
PARALLEL_MIN_WORK = 100_000


def _fit_task(task: GroupTask) -> list[LawFit]:
    with single_thread():
        return [
            fit_law(
                points,
                x,
                law,
                uniq_runs=task.uniq,
                counts=task.counts,
                extrapolate=task.extrapolate,
                seed=task.seed,
                salt=task.salt,
            )
            for points, x, law in task.laws
        ]


def fit_many(tasks: list[GroupTask], workers: int = 0, progress=None) -> list[list[LawFit]]:
    """Fit every group's laws, in worker processes when the work is large.

    `workers` 0: one per CPU, at most 2 (the fits are numpy-bound and single-threaded). The
    workers start from a clean forkserver (never forked from a process whose polars and BLAS
    thread pools are running) and receive only numpy arrays; results are identical to one
    process, whatever the number of workers.
    """
    if workers <= 0:
        workers = min(2, os.cpu_count() or 1)
    work = sum(t.counts.shape[0] * len(t.laws) for t in tasks)
    out: list[list[LawFit]] = []
    if workers <= 1 or work < PARALLEL_MIN_WORK or len(tasks) < 2:
        for task in tasks:
            out.append(_fit_task(task))
            if progress is not None:
                progress.advance(len(task.laws))
        return out
    ctx = multiprocessing.get_context("forkserver")
    chunk = max(1, len(tasks) // (workers * 8))
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        for task, fits in zip(tasks, pool.map(_fit_task, tasks, chunksize=chunk), strict=True):
            out.append(fits)
            if progress is not None:
                progress.advance(len(task.laws))
    return out


def interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap samples, ignoring unusable (NaN) resamples."""
    samples = np.asarray(samples, dtype=float)
    samples = samples[np.isfinite(samples)]
    if samples.size < 10:
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(samples, [tail, 100 - tail])
    return float(lo), float(hi)
