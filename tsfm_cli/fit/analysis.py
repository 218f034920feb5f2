"""All groups' fits, derived numbers, ID-vs-OOD and architecture comparisons, and the plan."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from scipy.special import ndtr

from tsfm_cli.errors import BadInputError
from tsfm_cli.fit.blas import single_thread
from tsfm_cli.fit.config import AUTO_GROUPS, VARYING_GROUPS, FitConfig
from tsfm_cli.fit.fitting import GroupTask, LawFit, fit_many, interval, run_counts
from tsfm_cli.fit.laws import exponent_at_bound
from tsfm_cli.fit.load import CONFIG, X_COLUMNS
from tsfm_cli.fit.select import end_of_schedule, select_points
from tsfm_cli.schema import ID_SCENARIO

# what a comparison between two groups looks at, per law: the floor E and the reducible-term
# exponents of the E-forms separately; the pure power law's α only as an "apparent slope" (a
# higher floor alone lowers it, so it is never the basis of a "scaling differs" claim)
COMPARED = {
    "power": (("alpha", "apparent slope"),),
    "power_e": (("E", "floor"), ("alpha", "exponent")),
    "joint": (("E", "floor"), ("alpha", "exponent"), ("beta", "exponent")),
}
CORRECTION = "holm"


@dataclass
class Group:
    keys: dict[str, Any]  # grouping column → value
    metric: str
    fits: list[LawFit] = field(default_factory=list)
    kind: str | None = None
    n_nonfinite: int = 0
    n_nonpositive: int = 0

    def get(self, x: str, law: str) -> LawFit | None:
        for f in self.fits:
            if f.x == x and f.law == law and f.ok:
                return f
        return None

    def label(self, skip: tuple[str, ...] = (), named: bool = False) -> str:
        """The group's key values ("encoder · 32"); `named`: with the keys ("encoder · horizon
        32"), for sentences."""
        return " · ".join(
            f"{k} {v}" if named and k != "arch" else f"{v}"
            for k, v in self.keys.items()
            if k not in skip
        )


def group_columns(frame: pl.DataFrame, config: FitConfig) -> list[str]:
    if config.group_by is not None:
        missing = [c for c in config.group_by if c not in frame.columns]
        if missing:
            raise BadInputError(f"fit.group_by: column {missing[0]!r} is not in the results")
        if any(c in AUTO_GROUPS for c in config.group_by):
            return list(config.group_by)  # the user's whole grouping
        # only group keys (`--group-by line`): per line *within* the default groups, never one
        # law pooling encoder and decoder or ID and drift
        auto = _auto_groups(frame)
        return auto + [c for c in config.group_by if c not in auto]
    cols = _auto_groups(frame)
    return cols + group_key_columns(frame, cols)


def _auto_groups(frame: pl.DataFrame) -> list[str]:
    return [
        c
        for c in AUTO_GROUPS
        if c in frame.columns and (c not in VARYING_GROUPS or frame[c].n_unique() > 1)
    ]


# columns that describe a run, a row or a scenario, never a subset of the evaluation data
NOT_GROUP_KEYS = {
    "run_id",
    "kind",
    "family",
    "severity",
    "split",
    "model",
    "status",
    "source",
    "params_source",
}


def group_key_columns(frame: pl.DataFrame, cols: list[str]) -> list[str]:
    """Group keys carried from the evaluation data (e.g. `line`, `machine`): text columns that
    split a run's checkpoint × scenario into several rows. Without them, one run's best
    checkpoint would be picked among rows of different lines."""
    base = [c for c in ("run_id", "step", "split", *cols) if c in frame.columns]
    if frame.select(base).is_unique().all():
        return []
    extra = [
        c
        for c, dtype in frame.schema.items()
        if c not in base
        and c not in NOT_GROUP_KEYS
        and not c.startswith("_")
        and (dtype == pl.String or isinstance(dtype, (pl.Categorical, pl.Enum)))
        and frame[c].n_unique() > 1
    ]
    return extra


def law_specs(frame: pl.DataFrame, config: FitConfig) -> list[tuple[str, str]]:
    specs = []
    for law in config.laws:
        if law == "joint":
            if {"params", "data_points"} <= set(frame.columns):
                specs.append(("N,D", "joint"))
            continue
        specs += [(x, law) for x in config.xs if X_COLUMNS[x] in frame.columns]
    return specs


def fit_groups(
    frame: pl.DataFrame,
    config: FitConfig,
    progress=None,
    val: pl.DataFrame | None = None,
) -> list[Group]:
    """Fit every law to every group × metric (BLAS held to one thread: tiny problems).

    `val`: validation rows of the same runs; checkpoints and frontiers are chosen there.
    """
    with single_thread():
        return _fit_groups(frame, config, progress, val)


def _val_parts(val: pl.DataFrame | None, cols: list[str]):
    """Validation rows per group key without the scenario (validation is its own scenario)."""
    if val is None:
        return [], None
    val_cols = [c for c in cols if c not in ("scenario", "kind") and c in val.columns]
    if not val_cols:
        return val_cols, {(): val}
    return val_cols, val.partition_by(val_cols, as_dict=True)


def _fit_groups(
    frame: pl.DataFrame, config: FitConfig, progress=None, val: pl.DataFrame | None = None
) -> list[Group]:
    cols = group_columns(frame, config)
    specs = law_specs(frame, config)
    groups: list[Group] = []
    tasks: list[GroupTask] = []
    parts = frame.partition_by(cols, as_dict=True, maintain_order=True) if cols else {(): frame}
    val_cols, val_parts = _val_parts(val, cols)
    for metric in config.metrics:
        for key in sorted(parts, key=lambda k: tuple(str(v) for v in k)):
            part = parts[key]
            g = Group(dict(zip(cols, key, strict=True)), metric)
            select_on = None
            if val_parts is not None:
                vkey = tuple(g.keys[c] for c in val_cols)
                # no validation rows for this group: chosen on its own rows (`rows` says which)
                select_on = val_parts.get(vkey)
            values = part[metric].to_numpy().astype(float)
            g.n_nonfinite = int(np.sum(~np.isfinite(values)))
            g.n_nonpositive = int(np.sum(np.isfinite(values) & (values <= 0)))
            if "kind" in part.columns:
                g.kind = str(part["kind"][0])
            runs = part["run_id"].to_numpy()
            configs = part[CONFIG].to_numpy() if CONFIG in part.columns else None
            uniq, counts = run_counts(runs, config.n_boot, config.seed, configs)
            laws_in = [
                (
                    select_points(
                        part,
                        metric,
                        x,
                        n_rows=config.n_rows,
                        d_rows=config.d_rows,
                        c_rows=config.c_rows,
                        checkpoint=config.checkpoint,
                        select_on=select_on,
                    ),
                    x,
                    law,
                )
                for x, law in specs
            ]
            salt = f"{metric}|{sorted((k, str(v)) for k, v in g.keys.items())}"
            tasks.append(GroupTask(laws_in, uniq, counts, config.extrapolation, config.seed, salt))
            groups.append(g)
    for g, fits in zip(groups, fit_many(tasks, config.workers, progress), strict=True):
        g.fits = fits
    return groups


def is_id(group: Group) -> bool:
    return group.keys.get("scenario") == ID_SCENARIO or group.kind == ID_SCENARIO


# ------------------------------------------------------------------------------------------
# Derived numbers


def derived(fit: LawFit, target_factor: float) -> dict[str, tuple[float, np.ndarray, float]]:
    """coef → (value, bootstrap samples, `at`) for numbers that follow from a law."""
    out: dict[str, tuple[float, np.ndarray, float]] = {}
    if fit.law == "joint":
        a, b = fit.coefs["alpha"], fit.coefs["beta"]
        ba, bb = fit.boot["alpha"], fit.boot["beta"]
        with np.errstate(invalid="ignore", divide="ignore"):
            out["a_opt"] = (b / (a + b), bb / (ba + bb), float("nan"))
            out["b_opt"] = (a / (a + b), ba / (ba + bb), float("nan"))
        target = fit.points.X.max(axis=1) * target_factor
    else:
        target = np.array([fit.points.X[0].max() * target_factor])
    at = target[:, None]
    value = float(fit.predict(at)[0])
    samples = fit.predict(at, boot=True)[:, 0] if fit.boot else np.array([])
    out["loss_at_target"] = (value, samples, float(target[0]))
    return out


# ------------------------------------------------------------------------------------------
# Comparisons: ID vs each OOD scenario, and between architectures


def _match(groups: list[Group], ref: Group, **changes: Any) -> Group | None:
    want = {**ref.keys, **changes}
    for g in groups:
        if g.metric == ref.metric and g.keys == want:
            return g
    return None


def compare(groups: list[Group], level: float) -> list[dict[str, Any]]:
    """Every OOD-vs-ID and architecture-vs-architecture difference of every compared quantity,
    with its bootstrap interval, a two-sided p-value and the family's Holm-adjusted p-value."""
    rows: list[dict[str, Any]] = []

    def add(kind: str, a: Group, b: Group, label_a: str, label_b: str, key: str) -> None:
        for fa in a.fits:
            fb = b.get(fa.x, fa.law)
            if not fa.ok or fb is None or not fb.ok:
                continue
            if fa.law != "power" and (exponent_at_bound(fa.coefs) or exponent_at_bound(fb.coefs)):
                continue  # an exponent the data did not determine is no evidence of a change
            for coef, quantity in COMPARED[fa.law]:
                diff = fa.boot[coef] - fb.boot[coef]
                lo, hi = interval(diff, level)
                value = fa.coefs[coef] - fb.coefs[coef]
                rows.append(
                    {
                        "comparison": kind,
                        **{k: str(v) for k, v in a.keys.items()},
                        "group": a.label((key,)),
                        "vs": label_b,
                        "metric": a.metric,
                        "x": fa.x,
                        "law": fa.law,
                        "coef": coef,
                        "quantity": quantity,
                        "value_a": fa.coefs[coef],
                        "value_b": fb.coefs[coef],
                        "diff": value,
                        "ci_low": lo,
                        "ci_high": hi,
                        "excludes_zero": bool(np.isfinite(lo) and (lo > 0 or hi < 0)),
                        "p_value": bootstrap_p(value, diff),
                        "label_a": label_a,
                    }
                )

    for g in groups:
        if "scenario" in g.keys and not is_id(g):
            ref = _match(groups, g, scenario=ID_SCENARIO)
            if ref is not None:
                add("ood_vs_id", g, ref, str(g.keys["scenario"]), ID_SCENARIO, "scenario")
    archs = sorted({str(g.keys["arch"]) for g in groups if "arch" in g.keys})
    for g in groups:
        if "arch" not in g.keys:
            continue
        for other in archs:
            if other > str(g.keys["arch"]):
                ref = _match(groups, g, arch=other)
                if ref is not None:
                    add("arch_vs_arch", g, ref, str(g.keys["arch"]), other, "arch")
    return correct(rows, 1.0 - level)


def bootstrap_p(value: float, samples: np.ndarray) -> float:
    """Two-sided p-value of "no difference" from the bootstrap standard error (a Wald test).

    Not the share of resamples across zero: that cannot go below 1/B, and a multiplicity
    correction over hundreds of tests needs smaller p-values than 1000 resamples can show.
    """
    samples = np.asarray(samples, dtype=float)
    samples = samples[np.isfinite(samples)]
    if samples.size < 10 or not np.isfinite(value):
        return float("nan")
    se = float(np.std(samples, ddof=1))
    if se <= 0:
        return 0.0 if value != 0 else 1.0
    return float(2.0 * ndtr(-abs(value) / se))


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN stays NaN and does not count as a test)."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.size, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


def correct(rows: list[dict[str, Any]], alpha: float) -> list[dict[str, Any]]:
    """Holm within each family (one family per kind of comparison: every OOD-vs-ID test of the
    report is one family, every architecture test another); `clear` is the corrected verdict."""
    for kind in sorted({r["comparison"] for r in rows}):
        family = [r for r in rows if r["comparison"] == kind]
        adjusted = holm(np.array([r["p_value"] for r in family]))
        for r, p_adj in zip(family, adjusted, strict=True):
            r["p_adjusted"] = float(p_adj)
            r["correction"] = CORRECTION
            r["family_size"] = int(np.isfinite(adjusted).sum())
            r["clear"] = bool(np.isfinite(p_adj) and p_adj < alpha)
    return rows


# ------------------------------------------------------------------------------------------
# Planning with the joint law


def flops_per_nd(frame: pl.DataFrame) -> float:
    """k in C ≈ 6·k·N·D (tokens per data point, measured: median of C / (6·N·D) over runs, at
    the end of their schedules: with D a token budget it is the schedule's passes × tokens per
    point, the same for every run, not a factor that moves with the checkpoints kept)."""
    if not {"flops", "params", "data_points"} <= set(frame.columns):
        return 1.0
    frame = end_of_schedule(frame)
    ratio = (frame["flops"] / (6.0 * frame["params"] * frame["data_points"])).to_numpy()
    ratio = ratio[np.isfinite(ratio) & (ratio > 0)]
    return float(np.median(ratio)) if ratio.size else 1.0


def _joint_arrays(fit: LawFit, boot: bool) -> dict[str, np.ndarray]:
    src = fit.boot if boot else {k: np.array([v]) for k, v in fit.coefs.items()}
    return {k: np.asarray(src[k], dtype=float) for k in ("E", "A", "alpha", "B", "beta")}


def optimum(c: dict[str, np.ndarray], budget_flops: float, k: float):
    """N_opt, D_opt for C = 6·k·N·D (DESIGN §4 with k = 1), vectorised over samples."""
    alpha, beta = c["alpha"], c["beta"]
    with np.errstate(all="ignore"):
        G = (alpha * c["A"] / (beta * c["B"])) ** (1.0 / (alpha + beta))
        M = budget_flops / (6.0 * k)
        return G * M ** (beta / (alpha + beta)), M ** (alpha / (alpha + beta)) / G


def joint_loss(c: dict[str, np.ndarray], N: np.ndarray, D: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return c["E"] + c["A"] / N ** c["alpha"] + c["B"] / D ** c["beta"]


def budget_for_loss(c: dict[str, np.ndarray], target: float, k: float) -> np.ndarray:
    """Compute needed to reach `target` with the optimal allocation (NaN when L ≤ E)."""
    alpha, beta = c["alpha"], c["beta"]
    with np.errstate(all="ignore"):
        G = (alpha * c["A"] / (beta * c["B"])) ** (1.0 / (alpha + beta))
        K = c["A"] * G ** (-alpha) + c["B"] * G**beta
        gap = target - c["E"]
        M = (K / gap) ** ((alpha + beta) / (alpha * beta))
        return np.where(gap > 0, 6.0 * k * M, np.nan)


def _stat(value: float, samples: np.ndarray, level: float) -> dict[str, float]:
    lo, hi = interval(samples, level)
    return {"value": float(value), "ci_low": lo, "ci_high": hi}


def plan(groups: list[Group], frame: pl.DataFrame, config: FitConfig) -> list[dict[str, Any]]:
    """Rows of the plan: per ID joint law, N_opt / D_opt and predicted ID and OOD loss."""
    if config.budget_flops is None and config.target_loss is None:
        return []
    k = flops_per_nd(frame)
    rows = []
    for g in groups:
        fit = g.get("N,D", "joint")
        if fit is None or not is_id(g):
            continue
        c, cb = _joint_arrays(fit, False), _joint_arrays(fit, True)
        budget, budget_b = config.budget_flops, None
        if budget is None:
            budget = float(budget_for_loss(c, config.target_loss, k)[0])
            budget_b = budget_for_loss(cb, config.target_loss, k)
        base = {k2: str(v) for k2, v in g.keys.items()}
        base["group"] = g.label(("scenario",), named=True)
        base["metric"] = g.metric
        if not np.isfinite(budget):
            rows.append(
                {
                    **base,
                    "scenario": ID_SCENARIO,
                    "note": "target below the law's E",
                    "status": "unreachable",
                    "reason": "the target is below the law's floor E",
                }
            )
            continue
        n_opt, d_opt = optimum(c, budget, k)
        n_b, d_b = optimum(cb, budget if budget_b is None else budget_b, k)
        evidence = plan_evidence(fit, frame, config, budget, float(n_opt[0]), float(d_opt[0]), k)
        stats = {
            "budget_flops": _stat(budget, budget_b if budget_b is not None else [], config.level),
            "N_opt": _stat(n_opt[0], n_b, config.level),
            "D_opt": _stat(d_opt[0], d_b, config.level),
        }
        targets = [g] + [
            o
            for o in groups
            if o.metric == g.metric
            and not is_id(o)
            and {kk: v for kk, v in o.keys.items() if kk != "scenario"}
            == {kk: v for kk, v in g.keys.items() if kk != "scenario"}
        ]
        for t in targets:
            tf = t.get("N,D", "joint")
            if tf is None:
                continue
            loss = joint_loss(_joint_arrays(tf, False), n_opt, d_opt)[0]
            loss_b = joint_loss(_joint_arrays(tf, True), n_b, d_b)
            loss_low, loss_high = interval(loss_b, config.level)
            rows.append(
                {
                    **base,
                    "scenario": str(t.keys.get("scenario", ID_SCENARIO)),
                    **{
                        f"{name}{suffix}": s[key]
                        for name, s in stats.items()
                        for suffix, key in (("", "value"), ("_low", "ci_low"), ("_high", "ci_high"))
                    },
                    "loss": float(loss),
                    "loss_low": loss_low,
                    "loss_high": loss_high,
                    "flops_per_6nd": k,
                    **evidence,
                }
            )
    return rows


def data_available(frame: pl.DataFrame, config: FitConfig) -> float | None:
    """Training data that exists: the option, else the largest `unique_points` of the runs."""
    if config.data_available is not None:
        return float(config.data_available)
    if "unique_points" in frame.columns:
        top = frame["unique_points"].cast(pl.Float64, strict=False).max()
        return float(top) if top is not None and np.isfinite(top) else None
    return None


def plan_evidence(
    fit: LawFit,
    frame: pl.DataFrame,
    config: FitConfig,
    budget: float,
    n_opt: float,
    d_opt: float,
    k: float,
) -> dict[str, Any]:
    """Is a plan inside the tested range? `status` "ok" or "extrapolation" with the reasons."""
    N, D = fit.points.X
    c_max = float(np.max(6.0 * k * N * D))
    if "flops" in frame.columns:
        c_max = max(c_max, float(frame["flops"].max() or 0.0))
    limit = config.max_extrapolation
    reasons = []
    if budget > limit * c_max:
        reasons.append(
            f"the budget is {budget / c_max:.3g}× the largest run's compute ({c_max:.3g} FLOPs; "
            f"limit {limit:g}×)"
        )
    if n_opt > limit * N.max():
        reasons.append(
            f"the model is {n_opt / N.max():.3g}× the largest tested ({N.max():.3g}; "
            f"limit {limit:g}×)"
        )
    have = data_available(frame, config)
    if have is not None and d_opt > have:
        reasons.append(f"it needs {d_opt:.3g} data points; {have:.3g} exist")
    tested = (
        f"Tested range: N {N.min():.3g}–{N.max():.3g}, D {D.min():.3g}–{D.max():.3g}, "
        f"compute up to {c_max:.3g} FLOPs"
        + (f"; data available {have:.3g}" if have is not None else "; data available unknown")
        + "."
    )
    return {
        "status": "extrapolation" if reasons else "ok",
        "reason": "; ".join(reasons),
        "tested_range": tested,
        "max_flops_tested": c_max,
    }


def _quality_order(level: str) -> tuple[str, float]:
    if level in ("clean", "", "none"):
        return ("", 0.0)
    fam, _, sev = level.partition(":")
    try:
        return (fam, float(sev))
    except ValueError:
        return (fam, float("inf"))


def next_cleaner(level: str, levels: list[str]) -> str | None:
    """The next cleaner level: same family with the largest smaller severity, else clean."""
    fam, sev = _quality_order(level)
    if fam == "":
        return None
    cands = [lv for lv in levels if _quality_order(lv)[0] == fam and _quality_order(lv)[1] < sev]
    if cands:
        return max(cands, key=lambda lv: _quality_order(lv)[1])
    return "clean" if "clean" in levels else None


def quality_tradeoff(
    groups: list[Group], frame: pl.DataFrame, config: FitConfig
) -> list[dict[str, Any]]:
    """Per quality level: loss gained by cleaning to the next level vs by the optimal model.

    Reference = the largest run (most compute) at that level, evaluated with the level's joint
    law; cleaning keeps that N and D with the next level's law; the model option keeps the data
    and moves to the compute-optimal N, D at `budget_flops`. ID scenario only.
    """
    if config.budget_flops is None or "train_quality" not in frame.columns:
        return []
    k = flops_per_nd(frame)
    rows = []
    id_groups = [g for g in groups if is_id(g) and g.get("N,D", "joint") is not None]
    levels = sorted({str(g.keys.get("train_quality")) for g in id_groups})
    for g in id_groups:
        level = str(g.keys.get("train_quality"))
        nxt = next_cleaner(level, levels)
        if nxt is None:
            continue
        other = _match(groups, g, train_quality=nxt)
        fit, ofit = g.get("N,D", "joint"), other.get("N,D", "joint") if other else None
        if ofit is None:
            continue
        part = frame.filter(pl.col("train_quality").cast(pl.String) == level)
        for key, value in g.keys.items():
            if key != "train_quality" and key in part.columns:
                part = part.filter(pl.col(key).cast(pl.String) == str(value))
        size = (
            pl.col("flops") if "flops" in part.columns else pl.col("params") * pl.col("data_points")
        )
        ref = part.sort(size, descending=True).row(0, named=True)
        n_ref, d_ref = np.array([ref["params"]]), np.array([ref["data_points"]])
        c, cb = _joint_arrays(fit, False), _joint_arrays(fit, True)
        oc, ocb = _joint_arrays(ofit, False), _joint_arrays(ofit, True)
        now, now_b = joint_loss(c, n_ref, d_ref)[0], joint_loss(cb, n_ref, d_ref)
        clean, clean_b = joint_loss(oc, n_ref, d_ref)[0], joint_loss(ocb, n_ref, d_ref)
        n_opt, d_opt = optimum(c, config.budget_flops, k)
        n_b, d_b = optimum(cb, config.budget_flops, k)
        model, model_b = joint_loss(c, n_opt, d_opt)[0], joint_loss(cb, n_b, d_b)
        gain_clean, gain_clean_b = now - clean, now_b - clean_b
        gain_model, gain_model_b = now - model, now_b - model_b
        lo_c, hi_c = interval(gain_clean_b, config.level)
        lo_m, hi_m = interval(gain_model_b, config.level)
        diff_lo, diff_hi = interval(gain_clean_b - gain_model_b, config.level)
        p_value = bootstrap_p(float(gain_clean - gain_model), gain_clean_b - gain_model_b)
        better = "clean the data" if gain_clean > gain_model else "bigger model"  # until Holm
        evidence = plan_evidence(
            fit, frame, config, config.budget_flops, float(n_opt[0]), float(d_opt[0]), k
        )
        if evidence["status"] != "ok":
            better = "extrapolation"  # the model option lies outside the runs: no verdict
        rows.append(
            {
                **{kk: str(v) for kk, v in g.keys.items()},
                **evidence,
                "group": g.label(("scenario", "train_quality"), named=True),
                "metric": g.metric,
                "next_level": nxt,
                "N_now": float(n_ref[0]),
                "D_now": float(d_ref[0]),
                "loss_now": float(now),
                "gain_cleaning": float(gain_clean),
                "gain_cleaning_low": lo_c,
                "gain_cleaning_high": hi_c,
                "N_opt": float(n_opt[0]),
                "D_opt": float(d_opt[0]),
                "gain_model": float(gain_model),
                "gain_model_low": lo_m,
                "gain_model_high": hi_m,
                "better": better,
                "diff_low": diff_lo,
                "diff_high": diff_hi,
                "p_value": p_value,
            }
        )
    # the trade-off verdicts are a family of tests too: Holm over them, "unclear" unless clear
    adjusted = holm(np.array([r["p_value"] for r in rows]))
    for r, p_adj in zip(rows, adjusted, strict=True):
        r["p_adjusted"], r["correction"] = float(p_adj), CORRECTION
        if r["better"] != "extrapolation" and not (np.isfinite(p_adj) and p_adj < 1 - config.level):
            r["better"] = "unclear"
    return rows
