"""The same results give the same fit to the last bit (issue 12: identity is content)."""

from __future__ import annotations

import numpy as np
import polars as pl

from tsfm_cli.fit.load import join_window_errors


def test_window_standard_errors_are_bit_identical_on_every_call():
    rng = np.random.default_rng(0)
    runs, scenarios, series, windows = 40, 6, 8, 40
    n = runs * scenarios * series * windows
    frame = pl.DataFrame(
        {
            "run_id": np.repeat([f"r{i}" for i in range(runs)], n // runs),
            "step": 100,
            "scenario": np.tile(
                np.repeat([f"s{i}" for i in range(scenarios)], series * windows), runs
            ),
            "horizon": 32,
            "series_id": np.tile(
                np.repeat([f"x{i}" for i in range(series)], windows), runs * scenarios
            ),
            "window_id": np.tile(np.arange(windows), runs * scenarios * series),
            "crps": rng.lognormal(0, 1, n),
        }
    ).with_columns(pl.col("horizon").cast(pl.Int32), pl.col("step").cast(pl.Int64))
    results = frame.group_by("run_id", "step", "scenario", "horizon").agg(pl.col("crps").mean())
    shuffled = [frame.sample(fraction=1.0, shuffle=True, seed=s).lazy() for s in range(4)]
    first, count = join_window_errors(results, shuffled[0], ["crps"])
    assert count == n and first["crps_se"].is_not_null().all()
    key = ["run_id", "scenario"]
    for other in shuffled[1:]:
        again, _ = join_window_errors(results, other, ["crps"])
        # the same windows in any file order: the same bits
        assert again.sort(key)["crps_se"].to_numpy().tobytes() == (
            first.sort(key)["crps_se"].to_numpy().tobytes()
        )
