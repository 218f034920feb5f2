"""The spike check's rolling median: a selection network in numpy, which must give exactly what
scipy's median filter gives (the rows of the series table depend on it)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import median_filter

from tsfm_cli.ingest.faults import NETWORK_BLOCK, NETWORK_MAX_WINDOW, _median_filter


@pytest.mark.parametrize("window", range(3, NETWORK_MAX_WINDOW + 3))
def test_the_median_network_gives_scipys_median_filter(window):
    rng = np.random.default_rng(window)
    for size in (0, 1, window - 1, window, 5_000, 2 * NETWORK_BLOCK + 3):  # blocks too
        # few distinct values: ties everywhere; infinities sort like any value
        x = rng.integers(0, 6, size).astype(np.float32)
        x[rng.random(size) < 0.05] = np.inf
        x[rng.random(size) < 0.05] = -np.inf
        inside = slice(window // 2, size - (window - 1 - window // 2))
        expected = median_filter(x, size=window, mode="nearest")
        assert np.array_equal(_median_filter(x, window)[inside], expected[inside])
