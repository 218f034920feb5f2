"""The law forms and how they are fitted (DESIGN §4).

- ``power``: the paper's pure power law ``L = (X_c / X)^α``, ordinary least squares of log L on
  log X (identical to ``numpy.polyfit(log X, log L, 1)``); weighted and vectorised over bootstrap
  resamples in closed form.
- ``power_e``: ``L = E + (X_c / X)^α`` and ``joint``: ``L(N, D) = E + A/N^α + B/D^β``, fitted as
  Chinchilla's approach 3: Huber loss (δ = 1e-3) on the residual, L-BFGS from a grid of starts.

Both E-forms share one parametrisation, ``pred = E + Σ_j exp(c_j − e_j · u_j)`` with
``u_j = log X_j − x0_j`` centred on the group's mean log X (well conditioned for L-BFGS). When every
observed loss is positive, E = exp(θ₀) and the residual is ``log pred − log L`` ("log space");
when the group holds non-positive losses (NLL can be negative) E = θ₀ is free and the residual is
``pred − L`` in loss units ("loss space": NLL is already a log quantity).

Many problems (grid starts, bootstrap resamples) are solved at once by stacking them into one
L-BFGS problem: the objective is a sum of independent blocks, so its minimum is every block's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from tsfm_cli.fit.blas import single_thread

HUBER_DELTA = 1e-3
BOOT_STEPS = 100  # most batched LM steps per bootstrap resample, warm-started from the full fit
BOOT_STALL = 1e-4  # ... after which a resample improving by less than this share is done
BOOT_FTOL = 1e-6  # a resample whose accepted step improves by less than this share stops
_MAX_STACK = 256  # resamples per stacked L-BFGS problem (keeps line searches from coupling)


# ------------------------------------------------------------------------------------------
# Pure power law (least squares in log-log)


def power_lstsq(logx: np.ndarray, logy: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """Weighted least squares of logy on logx for each row of `w` [S, n] → [S, 2] (slope, icpt).

    `logy` is [n], or [S, n] when each resample has its own values (window level).

    Without `w` it is one unweighted fit (shape [1, 2]), the same as ``np.polyfit(x, y, 1)``.
    Rows whose weighted x has no spread give NaN.
    """
    if w is None:
        w = np.ones((1, logx.size))
    w = np.asarray(w, dtype=float)
    logy = np.broadcast_to(logy, w.shape)  # [n] or one row per resample [S, n]
    sw = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = (w @ logx) / sw
        my = np.einsum("sn,sn->s", w, logy) / sw
        dx = logx[None, :] - mx[:, None]
        sxx = np.einsum("sn,sn->s", w, dx * dx)
        sxy = np.einsum("sn,sn->s", w, dx * (logy - my[:, None]))
        slope = np.where(sxx > 1e-12 * np.maximum(sw, 1), sxy / sxx, np.nan)
    return np.stack([slope, my - slope * mx], axis=1)


def power_coefs(slope_icpt: np.ndarray) -> dict[str, np.ndarray]:
    """(slope, intercept) of log L on log X → α and X_c of ``L = (X_c/X)^α``."""
    slope, icpt = slope_icpt[:, 0], slope_icpt[:, 1]
    alpha = -slope
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        log_xc = icpt / alpha
        xc = np.exp(log_xc)
    return {"alpha": alpha, "X_c": xc}


# ------------------------------------------------------------------------------------------
# E-forms: E + Σ exp(c_j − e_j u_j)


@dataclass(frozen=True)
class EForm:
    """An E-form law on centred log inputs ``U`` [m, n] (m = 1 for power_e, 2 for joint)."""

    U: np.ndarray  # [m, n] centred log X
    x0: np.ndarray  # [m] the centres
    positive: bool  # True: E = exp(θ0), log residuals; False: E = θ0, loss-space residuals

    @property
    def k(self) -> int:
        return 1 + 2 * self.U.shape[0]

    def predict(self, theta: np.ndarray, U: np.ndarray | None = None) -> np.ndarray:
        """theta [S, k] → predicted loss [S, n]."""
        U = self.U if U is None else U
        E = np.exp(theta[:, 0]) if self.positive else theta[:, 0]
        pred = np.repeat(E[:, None], U.shape[1], axis=1)
        for j in range(U.shape[0]):
            c, e = theta[:, 1 + 2 * j], theta[:, 2 + 2 * j]
            with np.errstate(over="ignore"):
                pred = pred + np.exp(np.clip(c[:, None] - e[:, None] * U[j][None, :], -700, 700))
        return pred

    def residual_and_jac(self, theta: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Residuals [S, n] and their derivative wrt theta [S, n, k]."""
        with np.errstate(all="ignore"):
            return self._residual_and_jac(theta, y)

    def _residual_and_jac(self, theta: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        S, n, m = theta.shape[0], self.U.shape[1], self.U.shape[0]
        jac = np.empty((S, n, self.k))
        E = np.exp(np.minimum(theta[:, 0], 700.0)) if self.positive else theta[:, 0]
        terms = [
            np.exp(
                np.minimum(theta[:, 1 + 2 * j, None] - theta[:, 2 + 2 * j, None] * self.U[j], 700.0)
            )
            for j in range(m)
        ]
        pred = E[:, None] + terms[0]
        for t in terms[1:]:
            pred += t
        # log space: d log(pred) = d pred / pred, so every column is scaled by 1/pred once
        scale = 1.0 / np.maximum(pred, 1e-300) if self.positive else None
        jac[:, :, 0] = E[:, None] * scale if self.positive else 1.0
        for j, t in enumerate(terms):
            ts = t * scale if self.positive else t
            jac[:, :, 1 + 2 * j] = ts
            jac[:, :, 2 + 2 * j] = -ts * self.U[j]
        if self.positive:
            return np.log(np.maximum(pred, 1e-300)) - np.log(np.atleast_2d(y)), jac
        return pred - np.atleast_2d(y), jac

    def coefs(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """theta [S, k] → named coefficients of the law as written in DESIGN §4."""
        E = np.exp(theta[:, 0]) if self.positive else theta[:, 0]
        out = {"E": E}
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            if self.U.shape[0] == 1:
                c, e = theta[:, 1], theta[:, 2]
                out["alpha"] = e
                # exp(c − α(log X − x0)) = (X_c / X)^α  ⇒  log X_c = c/α + x0
                out["X_c"] = np.exp(c / e + self.x0[0])
            else:
                for j, (amp, exp_name) in enumerate((("A", "alpha"), ("B", "beta"))):
                    c, e = theta[:, 1 + 2 * j], theta[:, 2 + 2 * j]
                    out[amp] = np.exp(c + e * self.x0[j])  # A / N^α = exp(c − α(log N − x0))
                    out[exp_name] = e
        return out


def make_eform(logX: np.ndarray, y: np.ndarray) -> EForm:
    """logX [m, n] raw log inputs → the E-form with centred inputs (log space if all y > 0)."""
    logX = np.atleast_2d(np.asarray(logX, dtype=float))
    x0 = logX.mean(axis=1)
    return EForm(U=logX - x0[:, None], x0=x0, positive=bool(np.all(y > 0)))


def _huber(r: np.ndarray, delta: float) -> np.ndarray:
    """Huber loss of the residuals, divided by δ (quadratic within ±δ, linear beyond)."""
    absr = np.abs(r)
    inside = np.minimum(absr, delta)  # = |r| within ±δ, δ beyond: one formula for both parts
    return inside * (absr - 0.5 * inside) / delta


def _huber_psi(r: np.ndarray, delta: float) -> np.ndarray:
    """Derivative of `_huber` with respect to the residual."""
    return r / np.maximum(np.abs(r), delta)  # = clip(r, -δ, δ) / δ


def _gradient_small(r: np.ndarray, jac: np.ndarray, w: np.ndarray, delta: float) -> np.ndarray:
    """[S] has each block converged: its gradient small relative to its weight (≈ points)?"""
    grad = np.einsum("sn,snk->sk", w * _huber_psi(r, delta), jac)
    scale = np.maximum(w.sum(axis=1), 1.0)
    return np.abs(grad).max(axis=1) / scale < 1e-3


def huber_objective(
    form: EForm, y: np.ndarray, w: np.ndarray, delta: float = HUBER_DELTA
) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    """f(flat θ [S*k]) → (Σ_s Σ_i w_si·huber(r_si)/δ, gradient); blocks are independent."""
    S = w.shape[0]

    def fun(flat: np.ndarray) -> tuple[float, np.ndarray]:
        theta = flat.reshape(S, form.k)
        r, jac = form.residual_and_jac(theta, y)
        f = float(np.sum(w * _huber(r, delta)))
        grad = np.einsum("sn,snk->sk", w * _huber_psi(r, delta), jac)
        if not np.isfinite(f):
            return 1e300, np.zeros_like(flat)
        return f, grad.ravel()

    return fun


@dataclass
class HuberResult:
    theta: np.ndarray  # [S, k]
    loss: np.ndarray  # [S] each block's objective
    converged: np.ndarray  # [S] bool
    message: str


EXPONENT_BOUNDS = (-2.0, 10.0)  # where the robust fit may search an E-form's exponents


def _bounds(form: EForm, y: np.ndarray) -> list[tuple[float | None, float | None]]:
    """Keep E from drifting to 0 forever (log E ≥ log min L − 15) and exponents in
    EXPONENT_BOUNDS."""
    floor = float(np.log(np.min(y))) - 15.0 if form.positive else None
    return [(floor, None)] + [(None, None), EXPONENT_BOUNDS] * form.U.shape[0]


def exponent_at_bound(coefs: dict[str, float]) -> bool:
    """True when a fitted exponent sits on the search bound: the data did not determine it (too
    few or too flat points), so it is no estimate to compare or report as a difference."""
    low, high = EXPONENT_BOUNDS
    return any(
        np.isclose(coefs[name], low, atol=1e-6) or np.isclose(coefs[name], high, atol=1e-6)
        for name in ("alpha", "beta")
        if name in coefs and np.isfinite(coefs[name])
    )


def fit_huber(
    form: EForm,
    y: np.ndarray,
    theta0: np.ndarray,
    w: np.ndarray | None = None,
    *,
    maxiter: int = 1000,
    delta: float = HUBER_DELTA,
) -> HuberResult:
    """Minimise each block's weighted Huber objective from `theta0` [S, k] (stacked L-BFGS)."""
    theta0 = np.atleast_2d(np.asarray(theta0, dtype=float))
    S = theta0.shape[0]
    if w is None:
        w = np.ones((S, y.size))
    thetas, losses, conv, messages = [], [], [], set()
    for lo in range(0, S, _MAX_STACK):
        t0, wb = theta0[lo : lo + _MAX_STACK], w[lo : lo + _MAX_STACK]
        fun = huber_objective(form, y, wb, delta)
        with single_thread():
            res = minimize(
                fun,
                t0.ravel(),
                jac=True,
                method="L-BFGS-B",
                bounds=_bounds(form, y) * t0.shape[0],
                options={"maxiter": maxiter, "ftol": 1e-12, "gtol": 1e-6, "maxcor": 20},
            )
        theta = res.x.reshape(t0.shape)
        r, jac = form.residual_and_jac(theta, y)
        ok = np.all(np.isfinite(theta), axis=1) & _gradient_small(r, jac, wb, delta)
        thetas.append(theta)
        losses.append(np.sum(wb * _huber(r, delta), axis=1))
        conv.append(ok)
        if not res.success:
            messages.add(str(res.message))
    return HuberResult(
        np.concatenate(thetas), np.concatenate(losses), np.concatenate(conv), "; ".join(messages)
    )


def _huber_sum(w: np.ndarray, r: np.ndarray, delta: float) -> np.ndarray:
    """Each block's weighted Huber objective [S]; inf where it is not finite."""
    with np.errstate(all="ignore"):
        f = np.sum(w * _huber(r, delta), axis=1)
    return np.where(np.isfinite(f), f, np.inf)


def _lm_step(r, jac, w, lam, delta) -> np.ndarray:
    """One damped IRLS Gauss-Newton step per block: [S, k].

    With ω = w / max(|r|, δ) the Huber gradient is Jᵀ(ω r) and its IRLS Hessian Jᵀ diag(ω) J.
    """
    omega = w / np.maximum(np.abs(r), delta)
    jw = jac * omega[:, :, None]
    jt = jac.transpose(0, 2, 1)
    grad = np.matmul(jw.transpose(0, 2, 1), r[:, :, None])
    H = np.matmul(jt, jw)
    k = H.shape[1]
    idx = np.arange(k)
    diag = np.maximum(H[:, idx, idx], 1e-12)
    H[:, idx, idx] += lam[:, None] * diag
    try:
        step = -np.linalg.solve(H, grad)[:, :, 0]
    except np.linalg.LinAlgError:
        step = -np.stack(
            [np.linalg.lstsq(a_, g_[:, 0], rcond=None)[0] for a_, g_ in zip(H, grad, strict=True)]
        )
    return np.where(np.all(np.isfinite(step), axis=1)[:, None], step, 0.0)


def fit_huber_batched(
    form: EForm,
    y: np.ndarray,
    theta0: np.ndarray,
    w: np.ndarray,
    *,
    maxiter: int = 600,
    delta: float = HUBER_DELTA,
    max_fallback: int = 200,
    stall: float = 0.0,
    ftol: float = 1e-8,
) -> HuberResult:
    """Minimise the same weighted Huber objective for many resamples at once.

    Batched Levenberg–Marquardt on the iteratively reweighted Gauss–Newton model of the Huber
    loss (IRLS), warm-started from `theta0` [S, k] (the full-data fit): each resample is its own
    problem (its own damping and acceptance), all advanced together with numpy. The working
    arrays hold only the unfinished resamples (compacted when some finish, so that no step pays
    for a gather over all of them). It reaches the minimiser that L-BFGS reaches (checked in the
    tests). Resamples still unfinished after `maxiter` steps are finished one by one by scipy's
    L-BFGS-B (at most `max_fallback`).

    `stall` > 0 also counts as converged a resample whose last accepted step improved its
    objective by less than that share: the bootstrap runs a fixed small number of steps from
    the full fit, and a resample still crawling by < 1e-4 per step moves its percentile by far
    less than the interval's own Monte Carlo error (measured in benchmarks/fit.py).
    """
    theta = np.array(theta0, dtype=float, copy=True)
    S = theta.shape[0]
    done = np.zeros(S, dtype=bool)
    last_rel = np.full(S, np.inf)
    idx = np.arange(S)
    th, wa = theta.copy(), np.asarray(w, dtype=float)
    per_row = np.ndim(y) == 2  # each resample its own observed values [S, n]
    ya = y
    r, jac = form.residual_and_jac(th, ya)
    f = _huber_sum(wa, r, delta)
    lam, lrel = np.full(S, 1e-3), np.full(S, np.inf)
    for _ in range(maxiter):
        if idx.size == 0:
            break
        step = _lm_step(r, jac, wa, lam, delta)
        cand = th + step
        r2, jac2 = form.residual_and_jac(cand, ya)
        f2 = _huber_sum(wa, r2, delta)
        better = f2 <= f
        rel = np.where(better, (f - f2) / np.maximum(np.abs(f), 1e-300), np.inf)
        th = np.where(better[:, None], cand, th)
        r = np.where(better[:, None], r2, r)
        jac = np.where(better[:, None, None], jac2, jac)
        f = np.where(better, f2, f)
        lrel = np.where(better, rel, lrel)
        lam = np.where(better, np.maximum(lam / 3.0, 1e-9), lam * 4.0)
        small_step = np.max(np.abs(step), axis=1) < 1e-6
        finished = (better & ((rel < ftol) | small_step)) | (lam > 1e12)
        if finished.any():
            gone = idx[finished]
            theta[gone], last_rel[gone], done[gone] = th[finished], lrel[finished], True
            keep = ~finished
            idx, th, wa, r, jac = idx[keep], th[keep], wa[keep], r[keep], jac[keep]
            f, lam, lrel = f[keep], lam[keep], lrel[keep]
            ya = ya[keep] if per_row else ya
    theta[idx], last_rel[idx] = th, lrel
    r, jac = form.residual_and_jac(theta, y)
    f = _huber_sum(w, r, delta)
    close = done | (last_rel < stall) | _gradient_small(r, jac, w, delta)
    converged = np.all(np.isfinite(theta), axis=1) & close
    # The few that crawl (IRLS is slow where residuals sit near δ) finish with L-BFGS-B.
    for i in np.flatnonzero(~converged)[:max_fallback]:
        yi = y[i] if per_row else y
        one = fit_huber(form, yi, theta[i][None, :], w[i][None, :], delta=delta)
        if np.isfinite(one.loss[0]) and one.loss[0] <= f[i]:
            theta[i], f[i], converged[i] = one.theta[0], one.loss[0], one.converged[0]
    return HuberResult(theta, f, converged, "")


def start_grid(form: EForm, y: np.ndarray) -> np.ndarray:
    """Chinchilla-style grid of starting points [G, k], scaled to the data."""
    if form.positive:
        lo = float(np.min(y))
        e_starts = np.log(lo * np.array([0.05, 0.5, 0.9]))
    else:
        spread = float(np.ptp(y)) or 1.0
        e_starts = float(np.min(y)) - spread * np.array([0.1, 1.0, 3.0])
    span = float(np.ptp(y)) or float(np.abs(np.mean(y))) or 1.0
    c_starts = np.log(span) + np.array([-1.5, 0.0, 1.5])
    m = form.U.shape[0]
    exps = np.array([0.1, 0.35, 0.8]) if m == 1 else np.array([0.15, 0.6])
    c_starts = c_starts if m == 1 else c_starts[[0, 2]] - np.log(2)
    axes = [e_starts] + [c_starts, exps] * m
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([g.ravel() for g in mesh], axis=1)


def fit_huber_grid(form: EForm, y: np.ndarray, polish: int = 2) -> HuberResult:
    """The full-data fit (one row): every start of the grid is advanced by the batched solver,
    then the `polish` best are minimised by scipy's L-BFGS-B and the lowest objective wins."""
    grid = start_grid(form, y)
    rough = fit_huber_batched(
        form, y, grid, np.ones((grid.shape[0], y.size)), maxiter=40, max_fallback=0
    )
    loss = np.where(np.isfinite(rough.loss), rough.loss, np.inf)
    best: HuberResult | None = None
    for i in np.argsort(loss)[:polish]:
        res = fit_huber(form, y, rough.theta[i][None, :])
        if best is None or (np.isfinite(res.loss[0]) and res.loss[0] < best.loss[0]):
            best = res
    return best


# ------------------------------------------------------------------------------------------
# Goodness of fit


def log_space_fit_stats(pred: np.ndarray, y: np.ndarray, log_space: bool) -> tuple[float, float]:
    """R² and RMSE of predictions in log space (loss space when `log_space` is False)."""
    if log_space:
        with np.errstate(invalid="ignore", divide="ignore"):
            a, b = np.log(pred), np.log(y)
    else:
        a, b = pred, y
    res = a - b
    ss_res = float(np.sum(res * res))
    ss_tot = float(np.sum((b - b.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")
    return r2, float(np.sqrt(np.mean(res * res)))
