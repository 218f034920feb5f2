"""fit exits 1 with one line when a requested metric has no finite value at all."""

from __future__ import annotations

import math

import polars as pl
import pytest

from tests.conftest import run_tsfm


@pytest.mark.parametrize("bad", [math.nan, math.inf, None])
def test_every_value_non_finite_exits_1_with_one_line(tmp_path, bad):
    results = tmp_path / "results.parquet"
    pl.DataFrame(
        {"params": [1e3, 1e4, 1e5], "crps": [bad] * 3, "nll": [1.0, 0.8, 0.7]},
        schema={"params": pl.Float64, "crps": pl.Float64, "nll": pl.Float64},
    ).write_parquet(results)
    out = tmp_path / "laws"
    result = run_tsfm("fit", results, "-o", out, "--metric", "crps", "--no-plots")
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "every crps value" in lines[0] and str(results) in lines[0]
    assert not out.exists()


def test_some_finite_values_still_fit(tmp_path):
    results = tmp_path / "results.parquet"
    pl.DataFrame({"params": [1e3, 1e4, 1e5, 1e6], "crps": [1.0, 0.8, math.nan, 0.6]}).write_parquet(
        results
    )
    result = run_tsfm("fit", results, "-o", tmp_path / "laws", "--no-plots", "--bootstrap", "20")
    assert result.returncode == 0, result.stderr
