"""From `bench.parquet` to the comparison a person reads: scores, 95% intervals over seeds, ranks.

For every strategy and seed a *score* is the mean metric (already averaged over windows) over the
horizons of one scenario; then

- ``id``: the score on the in-distribution scenario;
- ``family``: the mean score over the OOD scenarios of one family (e.g. every `level_shift:*`);
- ``ood``: the mean over OOD families (each family weighs the same);
- ``robustness``: ``ood ÷ id`` of the same seed (1 = no degradation under drift);
- ``scenario``: every scenario on its own (the heatmap and the best-per-scenario table).

Across seeds each is reported as mean ± a Student-t 95% interval (``t_{0.975, n−1}·s/√n``).
Lower is better for every metric and for robustness. Ranks honour the intervals: a strategy's
rank is 1 + the number of strategies whose whole interval lies below its own, so strategies whose
intervals overlap are not ranked apart (`tied_with` lists them). One seed gives no interval: such a
strategy is indistinguishable from every other.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from scipy import stats

from tsfm_cli.schema import ID_SCENARIO, METRICS

LEVELS = ("id", "ood", "family", "robustness", "scenario")
KEYS = ("strategy", "embedding", "normalisation")


def t_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float, float]:
    """(mean, sample std, low, high) of a Student-t interval; NaN bounds below 2 values."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    n = values.size
    if n == 0:
        return math.nan, math.nan, math.nan, math.nan
    mean = float(values.mean())
    if n < 2:
        return mean, math.nan, math.nan, math.nan
    std = float(values.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    return mean, std, mean - half, mean + half


def seed_scores(bench: pl.DataFrame, metric: str) -> pl.DataFrame:
    """One row per strategy × seed × (level, group) with that seed's `score`."""
    ok = bench.filter(pl.col("status") == "ok") if "status" in bench.columns else bench
    value = pl.col(metric).cast(pl.Float64)
    ok = ok.with_columns(pl.when(value.is_finite()).then(value).alias("_v"))
    per_scenario = (
        ok.group_by([*KEYS, "seed", "scenario", "family", "kind"])
        .agg(score=pl.col("_v").mean())
        .filter(pl.col("score").is_not_null())
    )
    keys = [*KEYS, "seed"]
    is_id = (pl.col("kind") == "id") | (pl.col("scenario") == ID_SCENARIO)
    scenario = per_scenario.select(
        *keys, pl.lit("scenario").alias("level"), pl.col("scenario").alias("group"), "score"
    )
    id_part = (
        per_scenario.filter(is_id)
        .group_by(keys)
        .agg(score=pl.col("score").mean())
        .with_columns(level=pl.lit("id"), group=pl.lit("id"))
    )
    family = (  # validation windows (kind "val") are no OOD family
        per_scenario.filter(~is_id & (pl.col("kind") != "val"))
        .group_by([*keys, "family"])
        .agg(score=pl.col("score").mean())
        .select(*keys, pl.lit("family").alias("level"), pl.col("family").alias("group"), "score")
    )
    ood = (
        family.group_by(keys)
        .agg(score=pl.col("score").mean())
        .with_columns(level=pl.lit("ood"), group=pl.lit("ood"))
    )
    robustness = (
        ood.join(id_part, on=keys, suffix="_id")
        .with_columns(score=pl.col("score") / pl.col("score_id"))
        .select(
            *keys, pl.lit("robustness").alias("level"), pl.lit("robustness").alias("group"), "score"
        )
    )
    columns = [*keys, "level", "group", "score"]
    parts = [id_part, ood, family, robustness, scenario]
    return pl.concat([part.select(columns) for part in parts]).sort(columns[:-1])


def rank_with_intervals(low: np.ndarray, high: np.ndarray) -> tuple[list[int], list[list[int]]]:
    """rank_i = 1 + #{j : high_j < low_i}; tied_i = {j ≠ i : intervals i and j overlap}.

    A missing interval (NaN) spans everything: it neither beats nor loses to anyone.
    """
    low = np.where(np.isfinite(low), low, -np.inf)
    high = np.where(np.isfinite(high), high, np.inf)
    n = len(low)
    ranks, tied = [], []
    for i in range(n):
        ranks.append(1 + int(sum(high[j] < low[i] for j in range(n) if j != i)))
        tied.append([j for j in range(n) if j != i and low[i] <= high[j] and low[j] <= high[i]])
    return ranks, tied


def summarise(bench: pl.DataFrame, metrics: tuple[str, ...] = METRICS) -> pl.DataFrame:
    """`summary.parquet`: one row per strategy × metric × (level, group)."""
    params = bench.group_by("strategy").agg(pl.col("params_total").max())
    failed = (
        bench.filter(pl.col("status") != "ok")
        .group_by("strategy")
        .agg(n_failed=pl.col("seed").n_unique())
        if "status" in bench.columns
        else pl.DataFrame(schema={"strategy": pl.String, "n_failed": pl.UInt32})
    )
    rows = []
    for metric in metrics:
        if metric not in bench.columns:
            continue
        scores = seed_scores(bench, metric)
        for (level, group), part in scores.group_by(["level", "group"], maintain_order=True):
            stats_rows = []
            for key, seeds in part.group_by(list(KEYS), maintain_order=True):
                mean, std, low, high = t_interval(seeds["score"].to_numpy())
                stats_rows.append((key, seeds.height, mean, std, low, high))
            lows = np.array([r[4] for r in stats_rows], dtype=np.float64)
            highs = np.array([r[5] for r in stats_rows], dtype=np.float64)
            ranks, tied = rank_with_intervals(lows, highs)
            for i, (key, n, mean, std, low, high) in enumerate(stats_rows):
                rows.append(
                    {
                        "strategy": key[0],
                        "embedding": key[1],
                        "normalisation": key[2],
                        "metric": metric,
                        "level": level,
                        "group": group,
                        "n_seeds": n,
                        "mean": mean,
                        "std": std,
                        "ci_low": low,
                        "ci_high": high,
                        "rank": ranks[i],
                        "tied_with": sorted(stats_rows[j][0][0] for j in tied[i]),
                    }
                )
    schema = {
        "strategy": pl.String,
        "embedding": pl.String,
        "normalisation": pl.String,
        "metric": pl.String,
        "level": pl.String,
        "group": pl.String,
        "n_seeds": pl.Int64,
        "mean": pl.Float64,
        "std": pl.Float64,
        "ci_low": pl.Float64,
        "ci_high": pl.Float64,
        "rank": pl.Int64,
        "tied_with": pl.List(pl.String),
    }
    frame = pl.DataFrame(rows, schema=schema)
    frame = frame.join(params, on="strategy", how="left").join(failed, on="strategy", how="left")
    frame = frame.with_columns(
        pl.col("n_failed").fill_null(0).cast(pl.Int64),
        best=(pl.col("rank") == 1) & pl.col("mean").is_not_null(),
    )
    order = pl.col("level").replace_strict({lv: i for i, lv in enumerate(LEVELS)}, default=99)
    return frame.sort(["metric", order, "group", "mean"], nulls_last=True)


def best_per_scenario(summary: pl.DataFrame, metric: str) -> pl.DataFrame:
    """Per scenario: the strategy with the lowest mean, its interval and who it cannot be told
    apart from (`tied_with`)."""
    part = summary.filter((pl.col("metric") == metric) & (pl.col("level") == "scenario"))
    return (
        part.sort("mean", nulls_last=True)
        .group_by("group", maintain_order=True)
        .first()
        .rename({"group": "scenario"})
        .select("scenario", "strategy", "mean", "ci_low", "ci_high", "tied_with", "n_seeds")
        .sort("scenario")
    )


def headline(summary: pl.DataFrame, metric: str) -> pl.DataFrame:
    """One row per strategy: params, ID, OOD, robustness (mean and interval), the mean OOD score
    of each family (`ood:<family>`) and the rank by OOD score (by ID score when the split has no
    OOD scenario)."""
    part = summary.filter(
        (pl.col("metric") == metric) & pl.col("level").is_in(["id", "ood", "robustness"])
    )
    ranked_by = "ood" if (part["level"] == "ood").any() else "id"
    wide = part.select("strategy").unique(maintain_order=True)
    for level in ("id", "ood", "robustness"):
        cols = part.filter(pl.col("level") == level).select(
            "strategy",
            pl.col("mean").alias(level),
            pl.col("ci_low").alias(f"{level}_low"),
            pl.col("ci_high").alias(f"{level}_high"),
            *([pl.col("rank"), pl.col("tied_with")] if level == ranked_by else []),
        )
        wide = wide.join(cols, on="strategy", how="left")
    families = summary.filter((pl.col("metric") == metric) & (pl.col("level") == "family"))
    if families.height:
        per_family = families.pivot(
            on="group", index="strategy", values="mean", sort_columns=True
        ).rename(lambda c: c if c == "strategy" else f"ood:{c}")
        wide = wide.join(per_family, on="strategy", how="left")
    params = summary.group_by("strategy").agg(
        pl.col("params_total").first(), pl.col("n_seeds").max()
    )
    return wide.join(params, on="strategy", how="left").sort(["rank", ranked_by], nulls_last=True)


def choose_strategy(bench: pl.DataFrame, metric: str) -> str | None:
    """The strategy a user should take: the lowest mean ``metric`` on the *validation* windows
    (``split == "val"``; mean over the seeds of each seed's mean over validation scenarios ×
    horizons; ties → the first by name). Test rows are never read; None without validation rows
    (an ood-split from before the validation split)."""
    if "split" not in bench.columns:
        return None
    ok = bench.filter((pl.col("split") == "val") & (pl.col("status") == "ok"))
    value = pl.col(metric).cast(pl.Float64)
    scores = (
        ok.filter(value.is_finite())
        .group_by("strategy", "seed")
        .agg(value.mean().alias("score"))
        .group_by("strategy")
        .agg(pl.col("score").mean())
        .sort("score", "strategy")
    )
    return scores["strategy"][0] if scores.height else None
