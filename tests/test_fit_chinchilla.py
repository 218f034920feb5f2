"""Chinchilla's published runs through `tsfm fit`: Epoch's joint law, its intervals, the 70B plan.

The runs are the 234 of Epoch's 245 digitised Chinchilla runs with C > 1e18 and N < D
(tests/data/chinchilla_runs.csv says where they come from). Epoch fitted 240 of the 245, so the
check is statistical, not to the digit: every coefficient must fall inside Epoch's published
interval (estimate ± 1.96 standard errors), our 95% interval must hold Epoch's estimate, and our
interval must be about as wide as theirs (neither the over-narrow intervals Epoch found in the
original paper nor a uselessly wide one).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from tsfm_cli.fit.config import FitConfig
from tsfm_cli.fit.stage import run_fit

RUNS = Path(__file__).parent / "data" / "chinchilla_runs.csv"

# Besiroglu et al. 2024, Table 1: estimate and standard error of L = E + A/N^α + B/D^β
EPOCH = {
    "E": (1.8172, 0.03),
    "A": (482.01, 124.58),
    "alpha": (0.3478, 0.02),
    "B": (2085.43, 1293.23),
    "beta": (0.3658, 0.02),
}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chinchilla")
    runs = pl.read_csv(RUNS, comment_prefix="#")
    table = tmp / "runs.parquet"
    pl.DataFrame(
        {
            "run_id": [f"chinchilla-{i}" for i in range(runs.height)],
            "params": runs["N"].cast(pl.Float64),
            "data_points": runs["D"].cast(pl.Float64),
            "flops": runs["C"],
            "loss": runs["loss"],
        }
    ).write_parquet(table)
    config = FitConfig(
        metrics=["loss"], laws=["joint"], n_boot=1000, plots=False, budget_flops=5.76e23
    )
    summary = run_fit([table], tmp / "laws", config)
    laws = pl.read_parquet(tmp / "laws" / "laws.parquet").filter(pl.col("law") == "joint")
    coefs = {r["coef"]: r for r in laws.iter_rows(named=True)}
    plan = next(r for r in summary["plan"] if r["scenario"] == "id")
    return coefs, plan, runs.height


def test_the_published_runs_are_all_used(fitted):
    coefs, _, n_runs = fitted
    assert n_runs == 234
    assert all(row["n_points"] == n_runs for row in coefs.values())


@pytest.mark.parametrize("name", list(EPOCH))
def test_each_coefficient_lies_inside_epochs_interval(fitted, name):
    coefs, _, _ = fitted
    estimate, se = EPOCH[name]
    assert abs(coefs[name]["value"] - estimate) <= 1.96 * se


@pytest.mark.parametrize("name", list(EPOCH))
def test_our_interval_holds_epochs_estimate(fitted, name):
    coefs, _, _ = fitted
    row = coefs[name]
    assert row["ci_low"] < EPOCH[name][0] < row["ci_high"]


@pytest.mark.parametrize("name", ["E", "alpha", "beta"])
def test_our_interval_is_about_as_wide_as_epochs(fitted, name):
    coefs, _, _ = fitted
    row = coefs[name]
    half_width = (row["ci_high"] - row["ci_low"]) / 2
    assert 0.5 < half_width / (1.96 * EPOCH[name][1]) < 1.5


def test_the_chinchilla_budget_gives_about_70b_parameters_and_20_tokens_each(fitted):
    _, plan, _ = fitted
    assert 5e10 < plan["N_opt"] < 9e10
    assert 15 < plan["D_opt"] / plan["N_opt"] < 30
    assert plan["N_opt_low"] < 7e10 < plan["N_opt_high"]
    # Chinchilla's own budget is 44× its largest run: the plan is given, marked as extrapolation
    assert plan["status"] == "extrapolation" and "44.5×" in plan["reason"]
