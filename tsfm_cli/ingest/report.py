"""report.parquet (one row per series) and quality.png (a timeline per series)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from tsfm_cli.ingest.config import format_duration
from tsfm_cli.schema import Flag

FAULT_BITS = int(Flag.OUT_OF_RANGE | Flag.SPIKE | Flag.STUCK | Flag.DUPLICATE_CONFLICT)
# what `fault_frac` counts: points the fault checks flagged (hidden when masked), as opposed to
# `absent_frac`: points with no usable reading that no check flagged (no row, empty, junk text)
CHECK_BITS = int(Flag.OUT_OF_RANGE | Flag.SPIKE | Flag.STUCK | Flag.SENTINEL)
PLOT_BINS = 400
PLOT_MAX_SERIES = 120


def build_report(
    grid: pl.DataFrame, names: pl.DataFrame, key_cols: list[str], files: list[str],
    units: dict[str, str | None],
) -> pl.DataFrame:  # fmt: skip
    return combine_report([report_parts(grid)], names, key_cols, files, units)


def report_parts(grid: pl.DataFrame, by_chunk: bool = False) -> pl.DataFrame:
    """Per `_sid` (and with `by_chunk` per `_chunk`, µs) of a stretch of the grid: the counts and
    bounds its report row is made of. A series cleaned in several stretches (time chunks) adds
    its parts up in `combine_report`; a rerun keeps those of the chunks it does not clean."""
    counts = [
        ((pl.col("flags") & int(flag)) != 0).sum().cast(pl.Int64).alias(flag.name.lower())
        for flag in Flag
    ]
    # lazy: the streaming group_by is faster than the eager one over millions of points
    return (
        grid.lazy()
        .group_by("_sid", *([pl.col("_chunk").dt.epoch("us")] if by_chunk else []))
        .agg(
            pl.col("_file").unique().alias("_files"),
            pl.len().cast(pl.Int64).alias("points"),
            pl.col("observed").sum().cast(pl.Int64).alias("observed"),
            ((pl.col("flags") & CHECK_BITS) != 0).sum().cast(pl.Int64).alias("_faulty"),
            (~pl.col("observed") & ((pl.col("flags") & CHECK_BITS) == 0))
            .sum()
            .cast(pl.Int64)
            .alias("_absent"),
            *counts,
            pl.col("freq_s").first(),
            pl.col("timestamp").min().alias("start"),
            pl.col("timestamp").max().alias("end"),
        )
        .collect()
    )


def combine_report(
    parts: list[pl.DataFrame], names: pl.DataFrame, key_cols: list[str], files: list[str],
    units: dict[str, str | None],
) -> pl.DataFrame:  # fmt: skip
    """report.parquet's rows from the `report_parts` of every stretch of every series."""
    sums = ["points", "observed", "_faulty", "_absent", *[f.name.lower() for f in Flag]]
    per = (
        pl.concat(parts, how="diagonal_relaxed")
        .group_by("_sid")
        .agg(
            pl.col("_files").list.explode(keep_nulls=False, empty_as_null=False).unique(),
            *[pl.col(c).sum() for c in sums],
            pl.col("freq_s").first(),
            pl.col("start").min(),
            pl.col("end").max(),
        )
    )
    file_names = pl.Series(files, dtype=pl.String)
    per = per.with_columns(
        sources=pl.Series(
            [";".join(sorted(file_names[i] for i in fs if i is not None)) for fs in per["_files"]],
            dtype=pl.String,
        )
    ).drop("_files")
    report = (
        names.select(
            "_sid",
            "series_id",
            pl.col("sensor").cast(pl.String),
            *[pl.col(k).cast(pl.String) for k in key_cols],
        )  # fmt: skip
        .join(per, on="_sid", how="inner")
        .with_columns(
            missing_frac=1 - pl.col("observed") / pl.col("points"),
            absent_frac=pl.col("_absent") / pl.col("points"),
            fault_frac=pl.col("_faulty") / pl.col("points"),
            freq=pl.col("freq_s").map_elements(format_duration, return_dtype=pl.String),
            unit=pl.col("series_id").replace_strict(units, default=None, return_dtype=pl.String),
        )
        .drop("_absent", "_faulty")
        .sort("_sid")
    )
    return report


GATED = {  # gate_on → the share of a series' points the quality gate looks at
    "absent": pl.col("absent_frac"),
    "faults": pl.col("fault_frac"),
    "both": pl.col("absent_frac") + pl.col("fault_frac"),  # disjoint: absent has no check flag
}


def _ffill(row):
    import numpy as np

    idx = np.where(~np.isnan(row), np.arange(len(row)), 0)
    np.maximum.accumulate(idx, out=idx)
    return row[idx]


def bin_states(states, bins: int):
    """Per-point states (0 observed, 1 filled, 2 missing, 3 fault) → one colour index per time
    bin: 4 a fault anywhere in the bin (rare and worth seeing), 3 half or more of it missing,
    2 some of it missing, 1 some of it filled, 0 observed. A bin narrower than a point repeats
    the previous point's state. (Worst-state-wins painted a series with 5% scattered one-point
    gaps, as clock jitter leaves, entirely as missing.)"""
    binned = StateBins(len(states), bins)
    binned.add(states, 0)
    return binned.colours()


class StateBins:
    """`bin_states` of a series whose points come in stretches (time chunks cleaned apart):
    each stretch adds its counts per bin, the colours are drawn from all of them at the end."""

    def __init__(self, length: int, bins: int):
        import numpy as np

        self.length, self.bins = int(length), bins
        self.edges = np.unique(np.linspace(0, self.length, bins + 1).astype(np.int64)[:-1])
        self.counts = np.zeros((3, len(self.edges)), dtype=np.int64)  # missing, filled, fault

    def add(self, states, offset: int) -> None:
        """The states of points offset, offset + 1, … of the series."""
        import numpy as np

        if not len(states):
            return
        if offset == 0 and len(states) == self.length:  # the whole series: sums per bin
            for row, state in enumerate((2, 1, 3)):
                hit = (states == state).astype(np.int64)
                self.counts[row] += np.add.reduceat(hit, self.edges)
            return
        at = np.arange(offset, offset + len(states))
        where = np.searchsorted(self.edges, at, side="right") - 1
        for row, state in enumerate((2, 1, 3)):
            self.counts[row] += np.bincount(where[states == state], minlength=len(self.edges))

    def add_runs(self, offsets, lengths, states) -> None:
        """Runs of one state: `lengths[i]` points of state `states[i]` from point `offsets[i]`
        of the series (what a kept chunk's plot is stored as: no point by point)."""
        import numpy as np

        bounds = np.append(self.edges, self.length)
        size = np.diff(bounds)
        for row, state in enumerate((2, 1, 3)):
            mine = states == state
            a = np.asarray(offsets)[mine].astype(np.int64)
            b = a + np.asarray(lengths)[mine].astype(np.int64)
            if not len(a):
                continue
            first = np.searchsorted(self.edges, a, side="right") - 1
            last = np.searchsorted(self.edges, b - 1, side="right") - 1
            one = first == last
            np.add.at(self.counts[row], first[one], (b - a)[one])
            first, last, a, b = first[~one], last[~one], a[~one], b[~one]
            np.add.at(self.counts[row], first, bounds[first + 1] - a)
            np.add.at(self.counts[row], last, b - bounds[last])
            whole = np.zeros(len(size) + 1, dtype=np.int64)  # the bins in between, whole
            np.add.at(whole, first + 1, 1)
            np.add.at(whole, last, -1)
            self.counts[row] += np.cumsum(whole)[:-1] * size

    def colours(self):
        import numpy as np

        out = np.full(self.bins, np.nan)
        if not self.length:
            return out
        size = np.diff(np.append(self.edges, self.length))
        missing, filled, fault = self.counts
        colour = np.select(
            [fault > 0, 2 * missing >= size, missing > 0, filled > 0], [4, 3, 2, 1], default=0
        )
        out[(self.edges * self.bins // self.length).astype(np.int64)] = colour
        return _ffill(out)


def _plot_state() -> pl.Expr:
    """Per point: 0 observed, 1 filled, 2 missing, 3 fault."""
    return (
        pl.when((pl.col("flags") & FAULT_BITS) != 0)
        .then(3)
        .when(~pl.col("observed") & ((pl.col("flags") & int(Flag.FILLED)) == 0))
        .then(2)
        .when((pl.col("flags") & int(Flag.FILLED)) != 0)
        .then(1)
        .otherwise(0)
        .cast(pl.Int8)
    )


def plot_runs(grid: pl.DataFrame) -> pl.DataFrame:
    """The runs of equal quality.png state (not 0, observed) in a grid sorted by series and time
    (`_sid`, `timestamp`, `observed`, `flags`; `_chunk` optional): `_sid`, `_chunk` (µs),
    `start_us`, `length`, `state`. The grid need not be kept until the drawing, and a kept
    chunk's plot is its runs."""
    chunk = pl.col("_chunk").dt.epoch("us") if "_chunk" in grid.columns else pl.lit(None, pl.Int64)
    frame = grid.lazy().select(
        "_sid", _chunk=chunk, _t=pl.col("timestamp").dt.epoch("us"), state=_plot_state()
    )
    new = (
        (pl.col("state") != pl.col("state").shift(1))
        | (pl.col("_sid") != pl.col("_sid").shift(1))
        | (pl.col("_chunk") != pl.col("_chunk").shift(1)).fill_null(False)
    )
    return (
        frame.with_columns(_run=new.fill_null(True).cum_sum())
        .filter(pl.col("state") != 0)
        .group_by("_run")
        .agg(
            pl.col("_sid").first(),
            pl.col("_chunk").first(),
            start_us=pl.col("_t").first(),
            length=pl.len().cast(pl.Int64),
            state=pl.col("state").first(),
        )
        .drop("_run")
        .sort("_sid", "start_us")
        .collect()
    )


def quality_plot(matrix, report: pl.DataFrame, path: Path) -> None:
    """One row per series over its own time span; colour = worst state in each time bin.
    `matrix`: the `StateBins` colours of report's first series, in its order."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    shown = report.head(PLOT_MAX_SERIES)
    row_of = {sid: i for i, sid in enumerate(shown["series_id"].to_list())}
    columns = ("series_id", "start", "end", "missing_frac", "absent_frac", "fault_frac")
    span_of = {r["series_id"]: r for r in shown.select(columns).iter_rows(named=True)}
    colours = ListedColormap(["#cfe8cf", "#7fb3e6", "#f2b8b8", "#d03030", "#f0a030"])
    height = 1.6 + 0.22 * len(row_of)
    fig = Figure(figsize=(13, height))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(matrix, aspect="auto", interpolation="nearest", cmap=colours, vmin=-0.5, vmax=4.5)
    ax.set_yticks(range(len(row_of)), list(row_of), fontsize=7)
    ax.set_xticks([])
    fmt = "%Y-%m-%d %H:%M"
    for sid, row in row_of.items():
        r = span_of[sid]
        text = (
            f"{r['start']:{fmt}} → {r['end']:{fmt}} UTC, {r['missing_frac']:.1%} missing "
            f"({r['absent_frac']:.1%} absent, {r['fault_frac']:.1%} faults)"
        )
        ax.text(PLOT_BINS + 4, row, text, va="center", fontsize=6)
    ax.set_xlabel("each row spans its series' own time range (shown on the right)", fontsize=8)
    ax.set_title("tsfm ingest: missing and flagged points per series", fontsize=10)
    legend = [
        Patch(color=c, label=label)
        for c, label in zip(
            colours.colors,
            [
                "observed",
                "filled (not observed)",
                "some points missing",
                "half or more missing",
                "fault (range, spike, stuck, conflict)",
            ],
            strict=True,
        )
    ]
    ax.legend(handles=legend, loc="upper center", bbox_to_anchor=(0.5, -0.04), ncol=5, fontsize=7)
    inch = 1 / fig.get_figheight()
    fig.subplots_adjust(left=0.2, right=0.69, top=1 - 0.4 * inch, bottom=0.7 * inch)
    fig.savefig(path, dpi=100)
