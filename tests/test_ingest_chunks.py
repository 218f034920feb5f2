"""A time chunk of a series cleaned alone, with its margins, gives exactly the rows that cleaning
the whole series gives: what a nightly run that recomputes only the chunks new data touches, and
a memory bound that follows a chunk instead of a history, both rest on."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from tsfm_cli.ingest.clean import clean, margin_points
from tsfm_cli.ingest.config import IngestConfig
from tsfm_cli.ingest.report import build_report, combine_report, report_parts
from tsfm_cli.schema import Flag

STEP_S = 60
DAY = 86_400 * 1_000_000


def _names(n_series: int) -> pl.DataFrame:
    ids = [f"line1/m{i}/sensor_{i}" for i in range(n_series)]
    return pl.DataFrame(
        {
            "_sid": np.arange(n_series, dtype=np.uint32),
            "series_id": ids,
            "sensor": [f"sensor_{i}" for i in range(n_series)],
        }
    )


def _readings(seed: int, n_series: int = 3, days: float = 4.6) -> pl.DataFrame:
    """Dirty 1-min readings: jitter, spikes, stuck runs (one across midnight), short and long
    gaps (one longer than a day: an empty chunk), duplicates (one conflicting), sentinels,
    out-of-range values, two files, rows shuffled."""
    rng = np.random.default_rng(seed)
    frames = []
    start = np.datetime64("2024-03-01T07:13:00", "us").astype(np.int64)
    for sid in range(n_series):
        n = int(days * 1440)
        t = start + sid * 17 * 1_000_000 + np.arange(n, dtype=np.int64) * STEP_S * 1_000_000
        t = t + rng.integers(-5, 6, n) * 1_000_000  # sampling jitter
        value = np.cumsum(rng.normal(0, 1, n)).astype(np.float32) + 50
        value[rng.choice(n, 12, replace=False)] += rng.choice([-60, 60], 12)  # spikes
        midnight = int((np.datetime64("2024-03-02T00:00:00", "us").astype(np.int64) - start) / 6e7)
        for at in (midnight - 20, int(rng.integers(100, n - 100))):  # stuck, one across 00:00
            value[at : at + 250] = value[min(at, n - 1)]
        value[int(rng.integers(0, n))] = 5_000  # out of range
        keep = np.ones(n, dtype=bool)
        for length in (2, 3, 7, 60, 3000 if sid == 1 else 400):  # 3,000 min: a day empty
            at = int(rng.integers(10, max(11, n - length - 10)))
            keep[at : at + length] = False
        flags = np.zeros(n, dtype=np.uint16)
        flags[rng.choice(n, 5, replace=False)] = int(Flag.SENTINEL)
        frame = pl.DataFrame(
            {
                "_sid": np.full(n, sid, dtype=np.uint32),
                "_file": (t > start + 2 * DAY).astype(np.int32),
                "raw_line": np.arange(n, dtype=np.int32) + 2,
                "timestamp": t,
                "value": value,
                "flags": flags,
            }
        ).filter(pl.Series(keep))
        frame = frame.with_columns(
            value=pl.when(pl.col("flags") > 0).then(None).otherwise(pl.col("value"))
        )
        dups = frame.sample(6, seed=seed + sid).with_columns(pl.col("raw_line") + 100_000)
        conflict = dups.head(1).with_columns(pl.col("value") + 1, pl.col("raw_line") + 1)
        frames += [frame, dups, conflict]
    readings = pl.concat(frames).with_columns(pl.col("timestamp").cast(pl.Datetime("us", "UTC")))
    return readings.sample(fraction=1.0, shuffle=True, seed=seed)


def _config(**overrides) -> IngestConfig:
    settings = {"ranges": {"sensor_*": [-1000, 1000]}, "fill": "linear", "max_gap": 3}
    return IngestConfig(**{**settings, "stuck_points": 30, **overrides})


def _spans(grid: pl.DataFrame, chunk: str) -> pl.DataFrame:
    """Each series' whole grid (first, last point, step) and its chunks [lo, hi)."""
    series = grid.group_by("_sid").agg(
        step_us=pl.col("freq_s").first().cast(pl.Int64) * 1_000_000,
        first_us=pl.col("timestamp").min().dt.epoch("us"),
        last_us=pl.col("timestamp").max().dt.epoch("us"),
    )
    chunks = grid.select("_sid", lo=pl.col("_chunk")).unique()
    chunks = chunks.with_columns(hi=pl.col("lo").dt.offset_by(chunk))
    chunks = chunks.select(
        "_sid", lo_us=pl.col("lo").dt.epoch("us"), hi_us=pl.col("hi").dt.epoch("us")
    )
    return chunks.join(series, on="_sid").sort("_sid", "lo_us")


@pytest.mark.parametrize(
    ("seed", "chunk", "overrides"),
    [
        (0, "1d", {}),
        (1, "1d", {"fill": "ffill", "duplicates": "last"}),
        (2, "1w", {"spike_window": 5, "freq": "1m"}),
        (3, "1d", {"stuck_points": 200, "max_gap": 10}),
        (4, "1d", {"stuck_points": 10**9}),  # a margin longer than any series: no overflow
    ],
)
def test_a_chunk_cleaned_alone_gives_the_rows_of_the_whole(seed, chunk, overrides):
    readings, names, config = _readings(seed), _names(3), _config(**overrides)
    whole, whole_rejects = clean(readings, names, config, chunk_every=chunk)
    assert ((whole["flags"] & int(Flag.SPIKE)) > 0).sum() > 0
    stuck = (whole["flags"] & int(Flag.STUCK) > 0).sum()
    assert stuck > 0 if config.stuck_points <= 250 else stuck == 0  # the planted runs: 250
    assert whole_rejects.height > 0
    spans = _spans(whole, chunk)
    if chunk == "1d":  # one series has a day without any reading: its points have no file
        assert whole["_file"].null_count() >= 1440
    # the readings that can reach a chunk's margins: margin points, and one more step of jitter
    reach = (min(margin_points(config, names), 10**6) + 1) * STEP_S * 1_000_000
    pieces, rejects = [], []
    for (lo, hi), span in spans.group_by(["lo_us", "hi_us"], maintain_order=True):
        # only the readings of the chunk and its margins: nothing else of the history
        near = pl.col("timestamp").dt.epoch("us").is_between(lo - reach, hi + reach)
        grid, dups = clean(readings.filter(near), names, config, chunk_every=chunk, span=span)
        pieces.append(grid)
        rejects.append(dups)
    pieced = pl.concat(pieces).sort("_sid", "timestamp")
    assert pieced.columns == whole.columns
    assert pieced.equals(whole)
    # the report adds up the stretches' parts: the rows of the report of the whole
    files, units = ["a.csv", "b.csv"], {names["series_id"][0]: "°C"}
    by_chunk = combine_report([report_parts(p) for p in pieces], names, [], files, units)
    assert by_chunk.equals(build_report(whole, names, [], files, units))
    assert by_chunk["sources"].to_list() == ["a.csv;b.csv"] * 3
    key = ["_file", "line", "column"]
    assert pl.concat(rejects).sort(key).equals(whole_rejects.sort(key))


def test_the_margin_follows_the_settings():
    names = _names(2)
    assert margin_points(_config(), names) == 30
    assert margin_points(_config(stuck_points=0, spike_window=21), names) == 20
    assert margin_points(_config(stuck_points=0, max_gap=50), names) == 51
    per_series = _config(series={"sensor_1": {"stuck_points": 500}})
    assert margin_points(per_series, names) == 500


def test_the_rolling_median_of_a_stretch_is_that_of_the_whole():
    """Gaps are filled for the median from at most half a window away, so an observed point's
    median never depends on a value before its stretch's margin (a long gap that starts before
    the stretch and ends inside it would otherwise carry a value from the hidden past)."""
    from tsfm_cli.ingest.faults import _rolling_median

    rng = np.random.default_rng(7)
    n, window = 4000, 11
    observed = np.ones(n, dtype=bool)
    for _ in range(40):
        at = int(rng.integers(0, n))
        observed[at : at + int(rng.integers(1, 80))] = False
    levels = np.repeat(rng.normal(0, 50, n // 100), 100)  # steps: a gap spans two levels
    value = (levels + rng.normal(0, 1, n)).astype(np.float32)
    grid = pl.DataFrame({"_sid": np.zeros(n, np.uint32), "value": value, "observed": observed})
    whole = _rolling_median(grid, window)
    margin = 2 * (window // 2)
    compared = 0
    for lo in range(0, n, 37):
        hi = min(n, lo + 120)
        a, b = max(0, lo - margin), min(n, hi + margin)
        part = _rolling_median(grid.slice(a, b - a), window)
        keep = pl.Series(observed[lo:hi])
        got = part.slice(lo - a, hi - lo).filter(keep)
        assert got.equals(whole.slice(lo, hi - lo).filter(keep))
        compared += len(got)
    assert compared > n


def test_a_budget_of_readings_cleans_stretches_that_give_the_rows_of_the_whole():
    """Memory follows a budget of readings: short series are cleaned whole, several together;
    longer ones a run of days at a time; the rows are those of cleaning everything at once."""
    from tsfm_cli.ingest.increment import (
        chunk_readings,
        file_index,
        lowest_times,
        spans_from_index,
        steps_from_lowest,
    )
    from tsfm_cli.ingest.stretches import plan

    short = _readings(12, n_series=2, days=0.3).with_columns(pl.col("_sid") + 3)
    readings, names, config = pl.concat([_readings(11), short]), _names(5), _config()
    whole, whole_rejects = clean(readings, names, config, chunk_every="1d")
    # each file's index and earliest readings, as ingest keeps them; the series' grids from those
    files = [readings.filter(pl.col("_file") == f).rename({"_sid": "_lid"}).lazy() for f in (0, 1)]
    local = names.select(pl.col("_sid").alias("_lid"), "series_id")
    index = pl.concat([file_index(f, local) for f in files]).join(
        names.select("_sid", "series_id"), on="series_id"
    )
    lows = pl.concat([lowest_times(f) for f in files]).rename({"_lid": "_sid"})
    spans = spans_from_index(index, steps_from_lowest(lows, config), names.height)
    chunks = chunk_readings(index, "1d")
    grid_of = whole.group_by("_sid").agg(
        step_us=pl.col("freq_s").first() * 1_000_000,
        first_us=pl.col("timestamp").min().dt.epoch("us"),
        last_us=pl.col("timestamp").max().dt.epoch("us"),
    )
    assert (
        spans.drop("readings", "points").sort("_sid").equals(grid_of.sort("_sid"), null_equal=True)
    )
    assert chunks["readings"].sum() == readings.height

    stretches = plan(spans, chunks, budget=2_500)
    assert [s.whole for s in stretches].count(True) == 1  # the two short series, together
    assert len(stretches) >= 1 + 3 * 3
    reach = (margin_points(config, names) + 1) * STEP_S * 1_000_000
    pieces, rejects = [], []
    for s in stretches:
        lo = s.sids[0]
        assert s.sids == tuple(range(lo, lo + len(s.sids)))  # a full build: runs of series
        own = names.slice(lo, len(s.sids)).with_columns(pl.col("_sid") - lo)
        mine = readings.filter(pl.col("_sid").is_in(list(s.sids)))
        mine = mine.with_columns(pl.col("_sid") - lo)
        if s.whole:
            grid, dups = clean(mine, own, config, chunk_every="1d")
        else:
            ((t_lo, t_hi),) = s.bounds
            at = pl.col("timestamp").dt.epoch("us")
            mine = mine.filter(at.is_between(t_lo - reach, t_hi + reach))
            span = spans.filter(pl.col("_sid") == lo).with_columns(
                _sid=pl.lit(0, pl.UInt32), lo_us=pl.lit(t_lo), hi_us=pl.lit(t_hi)
            )
            grid, dups = clean(mine, own, config, chunk_every="1d", span=span)
        pieces.append(grid.with_columns(pl.col("_sid") + lo))
        rejects.append(dups.with_columns(pl.col("_sid") + lo))
    assert pl.concat(pieces).equals(whole)
    key = ["_file", "line", "column"]
    assert pl.concat(rejects).sort(key).equals(whole_rejects.sort(key))


def test_the_medians_gap_fill_is_a_limited_fill_per_series(monkeypatch):
    """The numpy fill (blocks of whole series) gives polars' forward then backward fill with a
    limit, per series: no value crosses from one series into the next, whatever the blocks."""
    from tsfm_cli.ingest import faults

    rng = np.random.default_rng(1)
    for trial in range(200):
        monkeypatch.setattr(faults, "FILL_BLOCK_POINTS", int(rng.integers(1, 80)))
        lengths = rng.integers(1, 60, int(rng.integers(1, 6)))
        sid = np.repeat(np.arange(len(lengths), dtype=np.uint32), lengths)
        value = rng.normal(size=len(sid)).astype(np.float32)
        value[rng.random(len(sid)) < 0.1] = np.nan
        grid = pl.DataFrame(
            {"_sid": sid, "value": value, "observed": rng.random(len(sid)) > rng.random()}
        )
        reach = int(rng.integers(1, 6))
        observed = pl.when(pl.col("observed")).then(pl.col("value")).fill_nan(None)
        expected = grid.select(
            observed.forward_fill(limit=reach).backward_fill(limit=reach).over("_sid").fill_null(0)
        )
        got = faults._filled_near(grid, sid, reach)
        assert np.array_equal(got, expected.to_series().to_numpy()), trial
