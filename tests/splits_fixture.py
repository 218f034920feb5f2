"""A small valid `ood-split` stage directory, generated (tests never read ../shared).

Follows the BRIEF contract: train.parquet as series.parquet; eval.parquet with list columns,
`horizon`, `freq_s`, `sensor`, `split`, the group keys `line` and `machine`; scenarios.parquet
with `val` (validation windows whose targets follow the training range), `id` and one OOD
scenario. Time layout per series: train | val targets | test windows. ``val=False`` writes an
eval.parquet from before the validation split (no validation windows, no `split` column).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import polars as pl

from tsfm_cli.stagedir import StageWriter


def _series(rng: np.random.Generator, length: int, period: int, level: float) -> np.ndarray:
    t = np.arange(length)
    season = np.sin(2 * np.pi * t / period) + 0.5 * np.sin(2 * np.pi * t / (period / 3))
    walk = np.cumsum(rng.normal(0, 0.02, length))
    return (level + 3 * season + walk + rng.normal(0, 0.3, length)).astype(np.float32)


def make_splits(
    out: Path,
    *,
    n_series: int = 4,
    train_length: int = 1200,
    context: int = 64,
    horizons: tuple[int, ...] = (16, 32),
    windows: int = 6,
    val_windows: int = 2,
    freq_s: int = 60,
    missing: float = 0.05,
    seed: int = 0,
    val: bool = True,
) -> Path:
    """Write an ood-split directory at ``out`` and return it (``val=False``: an eval.parquet
    from before the validation split, with no validation windows and no `split` column)."""
    if not val:
        val_windows = 0
    rng = np.random.default_rng(seed)
    start = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    val_span = val_windows * max(horizons)  # validation targets right after train.parquet
    eval_length = val_span + context + max(horizons) + windows * 16
    train_frames, eval_rows = [], []
    for i in range(n_series):
        line = f"line{1 + i % 2}"  # two lines, so results can be reported per line
        sid = f"{line}/m{i}/temp"
        full = _series(rng, train_length + eval_length, period=48 + 8 * i, level=20.0 * (i + 1))
        observed = rng.random(full.size) > missing
        times = [start + dt.timedelta(seconds=freq_s * k) for k in range(train_length)]
        values = np.where(observed, full, np.nan)[:train_length]
        train_frames.append(
            pl.DataFrame(
                {
                    "series_id": sid,
                    "source": "fixture.csv",
                    "sensor": "temp",
                    "timestamp": times,
                    "value": pl.Series(values).fill_nan(None).cast(pl.Float32),
                    "observed": observed[:train_length],
                    "flags": np.where(observed[:train_length], 0, 1).astype(np.uint16),
                    "freq_s": freq_s,
                    "line": line,
                    "machine": f"m{i}",
                }
            )
        )
        keys = {"line": line, "machine": f"m{i}"}
        for horizon in horizons:
            for w in range(val_windows):
                t = train_length + w * max(horizons)  # target start; context from train
                c_obs, t_obs = observed[t - context : t], observed[t : t + horizon]
                eval_rows.append(
                    {
                        "scenario": "val",
                        "split": "val",
                        "family": "val",
                        "severity": 0.0,
                        "series_id": sid,
                        "window_id": windows + w,
                        "target_start": start + dt.timedelta(seconds=freq_s * t),
                        "context": np.where(c_obs, full[t - context : t], np.nan).tolist(),
                        "context_observed": c_obs.tolist(),
                        "target": np.where(t_obs, full[t : t + horizon], np.nan).tolist(),
                        "target_observed": t_obs.tolist(),
                        "horizon": horizon,
                        "freq_s": freq_s,
                        "sensor": "temp",
                        **keys,
                    }
                )
        for scenario, shift in (("id", 0.0), ("level_shift:2", 2.0)):
            for horizon in horizons:
                for w in range(windows):
                    a = train_length + val_span + w * 16
                    ctx = full[a : a + context].copy()
                    tgt = full[a + context : a + context + horizon].copy()
                    if shift:
                        tgt = tgt + shift * full.std()
                    c_obs = observed[a : a + context]
                    t_obs = observed[a + context : a + context + horizon]
                    eval_rows.append(
                        {
                            "scenario": scenario,
                            "split": "test",
                            "family": "id" if not shift else "level_shift",
                            "severity": shift,
                            "series_id": sid,
                            "window_id": w,
                            "target_start": start + dt.timedelta(seconds=freq_s * (a + context)),
                            "context": np.where(c_obs, ctx, np.nan).tolist(),
                            "context_observed": c_obs.tolist(),
                            "target": np.where(t_obs, tgt, np.nan).tolist(),
                            "target_observed": t_obs.tolist(),
                            "horizon": horizon,
                            "freq_s": freq_s,
                            "sensor": "temp",
                            **keys,
                        }
                    )
    train = pl.concat(train_frames).with_columns(pl.col("timestamp").cast(pl.Datetime("us", "UTC")))
    evals = pl.DataFrame(
        eval_rows,
        schema={
            "scenario": pl.String,
            "split": pl.String,
            "family": pl.String,
            "severity": pl.Float64,
            "series_id": pl.String,
            "window_id": pl.Int64,
            "target_start": pl.Datetime("us", "UTC"),
            "context": pl.List(pl.Float32),
            "context_observed": pl.List(pl.Boolean),
            "target": pl.List(pl.Float32),
            "target_observed": pl.List(pl.Boolean),
            "horizon": pl.Int32,
            "freq_s": pl.Int64,
            "sensor": pl.String,
            "line": pl.String,
            "machine": pl.String,
        },
    )
    if not val:
        evals = evals.drop("split")
    nulls = [pl.col(c).list.eval(pl.element().fill_nan(None)) for c in ("context", "target")]
    evals = evals.with_columns(nulls)
    scenarios = pl.DataFrame(
        {
            "scenario": ["id", "level_shift:2", "val"],
            "family": ["id", "level_shift", "val"],
            "kind": ["id", "synthetic", "val"],
            "severity": [0.0, 2.0, 0.0],
            "params": [json.dumps({}), json.dumps({"offset": 2.0}), json.dumps({})],
            "n_windows": [n_series * w * len(horizons) for w in (windows, windows, val_windows)],
        }
    ).filter(pl.col("n_windows") > 0)
    config = {
        "context_length": context,
        "horizons": list(horizons),
        "seed": seed,
        "val_windows": val_windows,
    }
    with StageWriter(Path(out), "ood-split", config=config, inputs=[], command=["fixture"]) as w:
        w.write_parquet("train.parquet", train)
        w.write_parquet("eval.parquet", evals)
        w.write_parquet("scenarios.parquet", scenarios)
        w.commit(summary={"series": n_series})
    return Path(out)
