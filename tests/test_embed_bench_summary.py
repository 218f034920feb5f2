"""The summary's scores, intervals and ranks, checked against hand computations."""

from __future__ import annotations

import math

import polars as pl
import pytest

from tsfm_cli.embed_bench.summary import (
    best_per_scenario,
    headline,
    rank_with_intervals,
    seed_scores,
    summarise,
    t_interval,
)

T_975_2 = 4.302652729749462  # Student t quantile, 2 degrees of freedom (3 seeds)

SCENARIOS = [  # scenario, family, kind
    ("id", "id", "id"),
    ("future", "future", "natural"),
    ("level_shift:1", "level_shift", "synthetic"),
    ("level_shift:2", "level_shift", "synthetic"),
    ("val", "val", "val"),  # validation windows: a scenario, but no OOD family
]


def _bench(crps_of) -> pl.DataFrame:
    """Rows for strategies × seeds × scenarios × 2 horizons; crps_of(strategy, seed, scen, h)."""
    rows = []
    for strategy in ("a", "b", "c"):
        for seed in (0, 1, 2):
            for scenario, family, kind in SCENARIOS:
                for horizon in (8, 16):
                    crps = crps_of(strategy, seed, scenario, horizon)
                    rows.append(
                        {
                            "strategy": strategy,
                            "embedding": strategy,
                            "normalisation": "std",
                            "seed": seed,
                            "scenario": scenario,
                            "family": family,
                            "kind": kind,
                            "horizon": horizon,
                            "crps": crps,
                            "nll": crps * 2,
                            "params_total": 1000 + ord(strategy),
                            "status": "ok",
                        }
                    )
    return pl.DataFrame(rows)


def _crps(strategy, seed, scenario, horizon):
    base = {"a": 1.0, "b": 1.05, "c": 3.0}[strategy]
    shift = {"id": 0.0, "future": 0.5, "level_shift:1": 1.0, "level_shift:2": 2.0, "val": 9.0}[
        scenario
    ]
    # horizons 8 and 16 average to base + shift + 0.2·seed
    return base + shift + 0.2 * seed + (0.1 if horizon == 16 else -0.1)


def test_t_interval_matches_hand_computation():
    mean, std, low, high = t_interval([1.0, 1.2, 1.4])
    half = T_975_2 * 0.2 / math.sqrt(3)
    assert mean == pytest.approx(1.2)
    assert std == pytest.approx(0.2)
    assert (low, high) == (pytest.approx(1.2 - half), pytest.approx(1.2 + half))
    assert math.isnan(t_interval([2.0])[2]) and t_interval([2.0])[0] == 2.0


def test_seed_scores_average_horizons_families_and_robustness():
    scores = seed_scores(_bench(_crps), "crps")
    a0 = scores.filter((pl.col("strategy") == "a") & (pl.col("seed") == 0))
    got = {(r["level"], r["group"]): r["score"] for r in a0.iter_rows(named=True)}
    # id: 1.0; future family: 1.5; level_shift family: mean(2.0, 3.0) = 2.5; ood = mean(1.5, 2.5)
    assert got[("id", "id")] == pytest.approx(1.0)
    assert got[("family", "future")] == pytest.approx(1.5)
    assert got[("family", "level_shift")] == pytest.approx(2.5)
    assert got[("ood", "ood")] == pytest.approx(2.0)
    assert got[("robustness", "robustness")] == pytest.approx(2.0)
    assert got[("scenario", "level_shift:2")] == pytest.approx(3.0)
    assert got[("scenario", "val")] == pytest.approx(10.0) and ("family", "val") not in got


def test_summary_intervals_come_from_the_seeds():
    summary = summarise(_bench(_crps), metrics=("crps",))
    row = summary.filter(
        (pl.col("strategy") == "a") & (pl.col("level") == "id") & (pl.col("metric") == "crps")
    ).row(0, named=True)
    # seeds give id scores 1.0, 1.2, 1.4
    half = T_975_2 * 0.2 / math.sqrt(3)
    assert row["n_seeds"] == 3
    assert row["mean"] == pytest.approx(1.2)
    assert row["ci_low"] == pytest.approx(1.2 - half)
    assert row["ci_high"] == pytest.approx(1.2 + half)
    assert row["params_total"] == 1000 + ord("a")
    robust = summary.filter((pl.col("strategy") == "c") & (pl.col("level") == "robustness"))
    # c: id 3.0 + 0.2 s, ood 4.0 + 0.2 s → robustness (4 + 0.2 s) / (3 + 0.2 s) per seed
    expected = [(4 + 0.2 * s) / (3 + 0.2 * s) for s in range(3)]
    assert robust["mean"][0] == pytest.approx(sum(expected) / 3)


def test_overlapping_intervals_are_not_ranked_apart():
    summary = summarise(_bench(_crps), metrics=("crps",))
    ood = summary.filter(pl.col("level") == "ood").sort("strategy")
    ranks = dict(zip(ood["strategy"], ood["rank"], strict=True))
    tied = dict(zip(ood["strategy"], ood["tied_with"].to_list(), strict=True))
    # a and b differ by 0.05 with a ±0.5 interval: not distinguishable; c is clearly worse
    assert ranks == {"a": 1, "b": 1, "c": 3}
    assert tied["a"] == ["b"] and tied["b"] == ["a"] and tied["c"] == []
    assert ood.filter(pl.col("best"))["strategy"].to_list() == ["a", "b"]


def test_rank_with_intervals_by_hand():
    ranks, tied = rank_with_intervals([0.0, 0.5, 2.0, float("nan")], [1.0, 1.5, 3.0, float("nan")])
    assert ranks == [1, 1, 3, 1]
    assert tied == [[1, 3], [0, 3], [3], [0, 1, 2]]


def test_failed_runs_are_left_out_and_counted():
    bench = _bench(_crps).with_columns(
        status=pl.when((pl.col("strategy") == "b") & (pl.col("seed") == 2))
        .then(pl.lit("failed"))
        .otherwise(pl.lit("ok"))
    )
    summary = summarise(bench, metrics=("crps",))
    row = summary.filter((pl.col("strategy") == "b") & (pl.col("level") == "id")).row(0, named=True)
    assert row["n_seeds"] == 2 and row["n_failed"] == 1
    assert row["mean"] == pytest.approx(1.05 + 0.1)


def test_best_per_scenario_and_headline():
    summary = summarise(_bench(_crps))
    best = best_per_scenario(summary, "crps")
    assert best["scenario"].to_list() == sorted(s for s, _, _ in SCENARIOS)
    assert set(best["strategy"]) == {"a"}
    assert best.filter(pl.col("scenario") == "id")["tied_with"].to_list() == [["b"]]
    head = headline(summary, "crps")
    assert head["strategy"].to_list()[-1] == "c"
    assert set(head.columns) >= {"id", "ood", "robustness", "rank", "params_total", "n_seeds"}
    a = head.filter(pl.col("strategy") == "a").row(0, named=True)
    # a: future 1.5 + 0.2 s, level_shift 2.5 + 0.2 s → means over seeds 1.7 and 2.7
    assert a["ood:future"] == pytest.approx(1.7) and a["ood:level_shift"] == pytest.approx(2.7)


def test_without_ood_scenarios_the_rank_follows_id():
    bench = _bench(_crps).filter(pl.col("scenario") == "id")
    summary = summarise(bench, metrics=("crps",))
    assert set(summary["level"]) == {"id", "scenario"}
    head = headline(summary, "crps")
    assert head["strategy"].to_list()[-1] == "c" and head["rank"].to_list() == [1, 1, 3]
    assert head["ood"].is_null().all()
