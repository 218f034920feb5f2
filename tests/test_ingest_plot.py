"""quality.png's time bins: scattered one-point gaps (clock jitter, as in SKAB's 1 s exports) must
not paint a 95%-observed series as missing, while a single fault and a real outage stay visible."""

from __future__ import annotations

import numpy as np

from tsfm_cli.ingest.report import bin_states

OBSERVED, FILLED, MISSING, FAULT = 0, 1, 2, 3


def test_scattered_gaps_are_partly_missing_not_missing():
    states = np.zeros(10_000, np.int8)
    states[::18] = MISSING  # 5.6% missing, one point at a time
    colours = bin_states(states, 400)
    assert not np.isnan(colours).any()
    assert (colours != 3).all(), "a 94% observed series drawn as mostly missing"
    assert set(np.unique(colours)) <= {0, 2} and (colours == 2).any()


def test_an_outage_a_fault_and_filling_stay_visible():
    states = np.zeros(4_000, np.int8)
    states[1_000:2_000] = MISSING  # a quarter of the series gone
    states[3_000] = FAULT  # one spike
    states[3_500:3_502] = FILLED
    colours = bin_states(states, 400)
    assert (colours[100:200] == 3).all() and (colours[:99] == 0).all()
    assert (colours == 4).sum() == 1 and colours[300] == 4
    assert colours[350] == 1


def test_fewer_points_than_bins_repeat_each_point():
    states = np.array([OBSERVED, MISSING, FAULT, FILLED], np.int8)
    colours = bin_states(states, 8)
    assert colours.tolist() == [0, 0, 3, 3, 4, 4, 1, 1]
    assert np.isnan(bin_states(np.zeros(0, np.int8), 8)).all()


def test_a_series_binned_in_stretches_gets_the_colours_of_the_whole():
    """A long series is cleaned a time chunk at a time: its plot row adds up the stretches."""
    from tsfm_cli.ingest.report import StateBins

    rng = np.random.default_rng(5)
    for length, bins in ((10_000, 400), (37, 400), (1_001, 7)):
        states = rng.choice([OBSERVED, FILLED, MISSING, FAULT], length, p=[0.9, 0.03, 0.06, 0.01])
        states = states.astype(np.int8)
        binned = StateBins(length, bins)
        cuts = np.sort(rng.choice(np.arange(1, length), 5, replace=False))
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, length], strict=True):
            binned.add(states[lo:hi], int(lo))
        assert np.array_equal(binned.colours(), bin_states(states, bins), equal_nan=True)
