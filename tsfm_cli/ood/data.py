"""The plant, a chunk of series at a time: their grids as flat numpy arrays, plus per-series
metadata of every series (one streaming pass)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from tsfm_cli.errors import BadInputError
from tsfm_cli.schema import SERIES_COLUMNS
from tsfm_cli.series_dataset import SeriesSource

REQUIRED = (*SERIES_COLUMNS, "freq_s")
NOT_GROUP_KEYS = ("timestamp", "value", "observed", "flags")
# per-reading columns of ingest's series table that are not a property of the series
NOT_CARRIED = (*SERIES_COLUMNS, "freq_s", "raw_line")


@dataclass
class Plant:
    """Rows of a chunk of the series table in table order (sorted by series_id, timestamp).

    ts [R] int64 µs UTC, values [R] float32 (NaN where not observed), observed [R] bool;
    series i of the chunk occupies rows offsets[i] : offsets[i] + lengths[i]. Per-series
    columns (series_ids … carried) cover every series of the plant.
    """

    ts: np.ndarray
    values: np.ndarray
    observed: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    series_ids: list[str]
    sensors: list[str]
    freq_s: np.ndarray
    groups: dict[str, np.ndarray] = field(default_factory=dict)  # key → [S] value per series
    carried: list[str] = field(default_factory=list)  # group keys copied into eval.parquet
    custom: dict[str, np.ndarray] = field(default_factory=dict)  # name → [R] bool matched rows

    @property
    def n_series(self) -> int:
        return len(self.series_ids)

    def rows(self, i: int) -> slice:
        return slice(int(self.offsets[i]), int(self.offsets[i] + self.lengths[i]))


def check_columns(source: SeriesSource, columns: list[str]) -> None:
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise BadInputError(
            f"{source}: missing column(s) {', '.join(missing)} (not an ingest output?)"
        )


def group_keys(columns: list[str]) -> list[str]:
    return [c for c in columns if c not in NOT_GROUP_KEYS]


def carried_keys(columns: list[str]) -> list[str]:
    """Ingest's per-series group keys (line, machine, file, …): copied into eval.parquet so
    that train can report per group (`tsfm fit --group-by line`)."""
    return [c for c in columns if c not in NOT_CARRIED]


def custom_expr(name: str, condition: str, columns: list[str], where: str) -> pl.Expr:
    """A user's SQL condition as a polars expression, checked against the columns."""
    try:
        expr = pl.sql_expr(condition)
        roots = expr.meta.root_names()
    except Exception as exc:  # noqa: BLE001 - polars raises several kinds for bad SQL
        raise BadInputError(
            f"{where}: custom '{name}': cannot parse '{condition}' ({exc})"
        ) from exc
    unknown = [r for r in roots if r not in columns]
    if unknown:
        raise BadInputError(
            f"{where}: custom '{name}' uses unknown column(s) {', '.join(unknown)} "
            f"(columns: {', '.join(columns)})"
        )
    return expr


# rows of the series table held in memory at once (13 bytes each as arrays): the memory bound
CHUNK_ROWS = 4_000_000


@dataclass
class SeriesMeta:
    """One row per series, in file order: what a chunk needs to know about every series."""

    series_ids: list[str]
    sensors: list[str]
    freq_s: np.ndarray  # [S] int64
    first_row: np.ndarray  # [S] int64 row of the table where the series starts
    lengths: np.ndarray  # [S] int64
    first_us: np.ndarray  # [S] int64 first timestamp, µs
    last_us: np.ndarray  # [S] int64 last timestamp, µs
    groups: dict[str, np.ndarray]  # key → [S] value per series
    carried: list[str]

    @property
    def n_series(self) -> int:
        return len(self.series_ids)


def load_meta(
    source: SeriesSource, keys: list[str], carried: list[str] = (), chunk_rows: int = CHUNK_ROWS
) -> SeriesMeta:
    """Per-series metadata in one pass over the rows, `chunk_rows` at a time (a slice of the
    scan each, aggregated, then the small per-slice aggregates combined): memory bounded by a
    slice and the number of series, not the rows. Fails when a series' rows are not contiguous
    (the ingest contract sorts by series_id, timestamp)."""
    carried = list(carried)
    keys = list(dict.fromkeys([*keys, *carried]))
    meta_cols = [c for c in dict.fromkeys(["sensor", "freq_s", *keys]) if c != "series_id"]
    ts = pl.col("timestamp").dt.epoch("us")
    scan = source.scan()
    total = scan.select(pl.len()).collect().item()
    partials = []
    for offset in range(0, total, chunk_rows):
        partials.append(
            scan.slice(offset, chunk_rows)
            .with_row_index("__row", offset=offset)
            .group_by("series_id", maintain_order=True)
            .agg(
                pl.col("__row").min().alias("__first"),
                pl.col("__row").max().alias("__last"),
                pl.len().alias("__len"),
                ts.min().alias("__first_us"),
                ts.max().alias("__last_us"),
                *[pl.col(c).first() for c in meta_cols],
            )
            .collect()
        )
    if not partials:  # no rows: the schema of an aggregate all the same
        partials = [pl.DataFrame(schema=_meta_schema(scan, meta_cols))]
    meta = (
        pl.concat(partials, how="diagonal_relaxed")
        .group_by("series_id", maintain_order=True)
        .agg(
            pl.col("__first").min(),
            pl.col("__last").max(),
            pl.col("__len").sum(),
            pl.col("__first_us").min(),
            pl.col("__last_us").max(),
            *[pl.col(c).first() for c in meta_cols],
        )
        .sort("__first")
    )
    lengths = meta["__len"].to_numpy().astype(np.int64)
    first_row = meta["__first"].to_numpy().astype(np.int64)
    if ((meta["__last"].to_numpy().astype(np.int64) - first_row + 1) != lengths).any():
        raise BadInputError(
            f"{source}: rows are not sorted by series_id, timestamp (ingest contract)"
        )
    return SeriesMeta(
        series_ids=meta["series_id"].cast(pl.String).to_list(),
        sensors=meta["sensor"].cast(pl.String).to_list(),
        freq_s=meta["freq_s"].to_numpy().astype(np.int64),
        first_row=first_row,
        lengths=lengths,
        first_us=meta["__first_us"].to_numpy().astype(np.int64),
        last_us=meta["__last_us"].to_numpy().astype(np.int64),
        groups={k: np.array(meta[k].cast(pl.String).to_list(), dtype=object) for k in keys},
        carried=carried,
    )


def _meta_schema(scan: pl.LazyFrame, meta_cols: list[str]) -> dict[str, pl.DataType]:
    schema = scan.collect_schema()
    fixed = ("__first", "__last", "__len", "__first_us", "__last_us")
    return {
        "series_id": schema["series_id"],
        **dict.fromkeys(fixed, pl.Int64),
        **{c: schema[c] for c in meta_cols},
    }


def chunks(
    meta: SeriesMeta, chunk_rows: int = CHUNK_ROWS, series: list[int] | None = None
) -> list[list[int]]:
    """`series` (default all, in file order) in consecutive groups of at most `chunk_rows`
    rows each (a longer series is a chunk of its own)."""
    series = list(range(meta.n_series)) if series is None else series
    out: list[list[int]] = []
    part: list[int] = []
    rows = 0
    for i in series:
        n = int(meta.lengths[i])
        if part and rows + n > chunk_rows:
            out.append(part)
            part, rows = [], 0
        part.append(i)
        rows += n
    if part:
        out.append(part)
    return out


def empty_plant(meta: SeriesMeta, custom: dict[str, pl.Expr]) -> Plant:
    """A chunk of no series: cutting windows from it gives every block, each empty."""
    return Plant(
        ts=np.empty(0, np.int64),
        values=np.empty(0, np.float32),
        observed=np.empty(0, bool),
        offsets=np.zeros(meta.n_series, np.int64),
        lengths=meta.lengths,
        series_ids=meta.series_ids,
        sensors=meta.sensors,
        freq_s=meta.freq_s,
        groups=meta.groups,
        custom={n: np.empty(0, bool) for n in custom},
        carried=meta.carried,
    )


def load_chunk(
    source: SeriesSource, meta: SeriesMeta, members: range, custom: dict[str, pl.Expr]
) -> Plant:
    """The rows of series `members` (consecutive indices into `meta`) as a Plant whose series
    indices stay those of `meta`: `offsets[i]` is valid for i in `members` only. Read with a
    series_id filter pushed down into the scan, so only those rows are materialised."""
    custom_cols = [
        expr.fill_null(False).cast(pl.Boolean).alias(f"__custom_{n}") for n, expr in custom.items()
    ]
    ids = [meta.series_ids[i] for i in members]
    try:
        frame = (
            source.scan(set(ids))
            .filter(pl.col("series_id").cast(pl.String).is_in(ids))
            .select(
                pl.col("timestamp").dt.epoch("us").alias("ts"),
                pl.col("value").cast(pl.Float32),
                pl.col("observed").fill_null(False),
                *custom_cols,
            )
            .collect()
        )
    except pl.exceptions.PolarsError as exc:
        raise BadInputError(f"{source}: cannot evaluate the custom conditions ({exc})") from exc
    values = frame["value"].fill_null(np.nan).to_numpy()
    observed = frame["observed"].to_numpy() & np.isfinite(values)
    values = np.where(observed, values, np.float32(np.nan)).astype(np.float32, copy=False)
    ts = frame["ts"].to_numpy()
    custom_rows = {n: frame[f"__custom_{n}"].to_numpy() for n in custom}
    del frame
    members = np.asarray(members, dtype=np.int64)
    offsets = np.zeros(meta.n_series, dtype=np.int64)
    sizes = meta.lengths[members]
    offsets[members] = np.cumsum(sizes) - sizes
    if len(ts) != int(sizes.sum()):
        raise BadInputError(f"{source}: series rows changed while being read")
    starts = np.zeros(len(ts), dtype=bool)
    starts[offsets[members][meta.lengths[members] > 0]] = True
    if len(ts) and ((np.diff(ts) <= 0) & ~starts[1:]).any():
        raise BadInputError(
            f"{source}: rows are not sorted by series_id, timestamp (ingest contract)"
        )
    return Plant(
        ts=ts,
        values=values,
        observed=observed,
        offsets=offsets,
        lengths=meta.lengths,
        series_ids=meta.series_ids,
        sensors=meta.sensors,
        freq_s=meta.freq_s,
        groups=meta.groups,
        custom=custom_rows,
        carried=meta.carried,
    )
