"""Results tables generated from known laws (for tests, the benchmark and trying `tsfm fit`).

Each run (arch × N × D × seed) has `checkpoints` checkpoints; checkpoint j has seen the fraction
j/checkpoints of its data, and its loss in each scenario is the joint law
``E + A/N^α + B/D_seen^β`` times log-normal noise. Columns follow the train results schema.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

Law = tuple[float, float, float, float, float]  # E, A, alpha, B, beta


def synth_results(
    laws: dict[str, Law],
    *,
    archs: Sequence[str] = ("encoder",),
    sizes: Sequence[float] = (1e3, 1e4, 1e5, 3e5, 1.7e6, 4.7e6),
    data: Sequence[float] = (1e5, 1e6, 1e7),
    seeds: Sequence[int] = (0,),
    checkpoints: int = 3,
    noise: float = 0.02,
    horizons: Sequence[int] | None = None,
    qualities: dict[str, float] | None = None,
    arch_scale: dict[str, float] | None = None,
    metric: str = "crps",
    full_grid: bool = True,
    seed: int = 0,
    val: bool = False,
    baselines: dict[str, float] | None = None,
) -> pl.DataFrame:
    """`laws`: scenario → (E, A, α, B, β). `qualities`: level → factor on B (worse data).

    `arch_scale`: arch → factor on α. `full_grid` False: only the L-shaped sweep (every N at the
    largest D, every D at the largest N), as a cheap sweep would run.

    `val`: the columns of the current train contract (split, model, epochs, unique_points,
    flops_attn, mase) and a validation row (scenario "val", split "val", from the ID law) per
    run × checkpoint. `baselines`: model name → its constant metric value, one baseline row per
    scenario × horizon × split (arch "baseline", params 0, run_id "baseline-<model>").
    """
    rng = np.random.default_rng(seed)
    rows = []
    quality_items = list((qualities or {"clean": 1.0}).items())
    for arch in archs:
        a_scale = (arch_scale or {}).get(arch, 1.0)
        for q_name, q_factor in quality_items:
            for n in sizes:
                for d in data:
                    if not full_grid and n != max(sizes) and d != max(data):
                        continue
                    for s in seeds:
                        run_id = f"{arch}-{q_name}-N{n:.0f}-D{d:.0f}-s{s}"
                        for j in range(1, checkpoints + 1):
                            seen = d * j / checkpoints
                            tokens = seen / 32.0
                            scen_laws = list(laws.items())
                            if val:
                                scen_laws.append(("val", laws.get("id", scen_laws[0][1])))
                            for scen, (E, A, alpha, B, beta) in scen_laws:
                                for h in horizons or [None]:
                                    h_factor = 1.0 if h is None else (1.0 + 0.1 * np.log2(h))
                                    loss = (
                                        E + A / n ** (alpha * a_scale) + q_factor * B / seen**beta
                                    ) * h_factor
                                    loss *= float(np.exp(rng.normal(0.0, noise)))
                                    row = {
                                        "run_id": run_id,
                                        "arch": arch,
                                        "embedding": "patch",
                                        "params": float(n),
                                        "params_total": float(n) * 1.1,
                                        "data_points": float(d),
                                        "tokens": float(tokens),
                                        "flops": 6.0 * n * tokens,
                                        "step": j * 100,
                                        "scenario": scen,
                                        "kind": "id" if scen == "id" else "synthetic",
                                        metric: loss,
                                        "seed": s,
                                        "status": "ok",
                                        "train_quality": q_name,
                                    }
                                    if h is not None:
                                        row["horizon"] = h
                                    if val:
                                        row.update(
                                            split="val" if scen == "val" else "test",
                                            kind="val" if scen == "val" else row["kind"],
                                            model="transformer",
                                            epochs=float(j / checkpoints),
                                            unique_points=int(d),
                                            flops_attn=row["flops"] * 1.1,
                                            mase=loss * 1.2,
                                        )
                                    rows.append(row)
    for name, value in (baselines or {}).items():
        scenarios = list(laws) + (["val"] if val else [])
        for scen in scenarios:
            for h in horizons or [None]:
                row = {
                    "run_id": f"baseline-{name}",
                    "arch": "baseline",
                    "model": name,
                    "params": 0.0,
                    "step": 0,
                    "scenario": scen,
                    "kind": "val" if scen == "val" else ("id" if scen == "id" else "synthetic"),
                    metric: value,
                    "mase": value * 1.2,
                    "status": "ok",
                    "split": "val" if scen == "val" else "test",
                }
                if h is not None:
                    row["horizon"] = h
                rows.append(row)
    frame = pl.DataFrame(rows, infer_schema_length=None)
    if qualities is None:
        frame = frame.drop("train_quality")
    return frame


def synth_windows(
    results: pl.DataFrame,
    *,
    metric: str = "crps",
    windows: int = 12,
    series: int = 4,
    sd: float = 0.3,
    seed: int = 0,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per-window metrics for the model rows of `results` (log-normal spread `sd` around each
    row's value, `windows` windows over `series` series) and the results with each row's metric
    replaced by its windows' mean, as train writes them. Returns (results, window_metrics)."""
    rng = np.random.default_rng(seed)
    models = results.filter(pl.col("arch") != "baseline").with_row_index("_row")
    n = models.height
    values = models[metric].to_numpy()[:, None] * np.exp(rng.normal(0.0, sd, (n, windows)))
    keys = [c for c in ("run_id", "step", "scenario", "horizon", "seed", "split") if c in models]
    win = models.select("_row", *keys).join(
        pl.DataFrame({"window_id": np.arange(windows)}), how="cross"
    )
    win = win.sort("_row", "window_id").with_columns(
        pl.Series(metric, values.ravel()),
        (pl.col("window_id") % series).cast(pl.String).alias("series_id"),
    )
    means = pl.DataFrame({"_row": np.arange(n, dtype=np.uint32), "_mean": values.mean(axis=1)})
    models = (
        models.join(means, on="_row")
        .with_columns(pl.col("_mean").alias(metric))
        .drop("_row", "_mean")
    )
    out = pl.concat([models, results.filter(pl.col("arch") == "baseline")], how="diagonal_relaxed")
    return out, win.drop("_row")
