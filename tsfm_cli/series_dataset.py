"""Ingest's `series` table on disk: a hive-partitioned parquet dataset, one file per series and
time chunk, that polars, DuckDB, Spark and pandas read as one table::

    series/series=<percent-encoded series_id>/chunk=<YYYY-MM-DD>/part-0.parquet

Every file holds all the columns of the table, `series_id` included (pyarrow refuses a hive key
that is also a column of the files, hence the key names `series` and `chunk`). `chunk` is the UTC
start of the file's time chunk: the day (midnight), the week (Monday) or the month (the 1st).

This module is the only place that knows the layout: names of the files, their order (series
then time: the order of the table) and the scan that stages read the table with.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

import numpy as np
import polars as pl

from tsfm_cli.errors import BadInputError

if TYPE_CHECKING:
    from tsfm_cli.stagedir import StageInput

DATASET = "series"  # the folder under the ingest directory
V1_FILE = "series.parquet"  # schema_version 1 of ingest: the whole table in one file
# auto picks the finest chunk that still holds this many points of the fastest series: files
# large enough to read efficiently, small enough that a day's new data touches few of them
AUTO_POINTS = 50_000
_SECONDS = {"day": 86_400, "week": 7 * 86_400}
CHUNK_EVERY = {"day": "1d", "week": "1w", "month": "1mo"}  # polars: weeks start on Monday
_NAME = re.compile(
    rf"{DATASET}/series=(?P<series>[^/]*)/chunk=(?P<chunk>\d{{4}}-\d{{2}}-\d{{2}})/part-0\.parquet"
)


def auto_granularity(freq_s: int) -> str:
    """`day` when a day holds AUTO_POINTS points at step `freq_s`, else `week` when a week does,
    else `month`."""
    for granularity in ("day", "week"):
        if _SECONDS[granularity] >= AUTO_POINTS * max(int(freq_s), 1):
            return granularity
    return "month"


def resolve(partition: str, freq_s: int) -> str:
    """The granularity a recipe's `partition` means for a dataset whose smallest step is
    `freq_s` seconds."""
    return auto_granularity(freq_s) if partition == "auto" else partition


def chunk_expr(granularity: str, column: str = "timestamp") -> pl.Expr:
    """The UTC date where each row's time chunk starts."""
    ts = pl.col(column)
    return ts.dt.convert_time_zone("UTC").dt.truncate(CHUNK_EVERY[granularity]).dt.date()


def partition_name(series_id: str, chunk: dt.date) -> str:
    """The file of (series, chunk), relative to the ingest directory. Every character but
    letters, digits and `_.-~` is percent-encoded: a `/` in a series id is not a folder, and
    `%` itself is encoded so that decoding gives the id back."""
    return f"{DATASET}/series={quote(series_id, safe='')}/chunk={chunk.isoformat()}/part-0.parquet"


MAX_KEY_BYTES = 240  # a folder name is at most 255 bytes on common file systems, "series=" is 7


def check_ids(series_ids: Iterable[str]) -> None:
    """BadInputError for a series id too long to be a folder name once percent-encoded (a
    hostile or mangled header), before anything is built."""
    for series_id in series_ids:
        size = len(quote(series_id, safe=""))
        if size > MAX_KEY_BYTES:
            raise BadInputError(
                f"series {series_id[:60]!r}…: its id is {size:,} bytes percent-encoded, more "
                f"than a file name may hold ({MAX_KEY_BYTES}); rename the column (`columns:`) "
                "or leave it out (`exclude_sensors:`)"
            )


def parse_name(name: str) -> tuple[str, str] | None:
    """(series_id, chunk date as text) of a partition file's name; None for another file."""
    match = _NAME.fullmatch(name)
    return (unquote(match["series"]), match["chunk"]) if match else None


def ordered(names: Iterable[str]) -> list[str]:
    """The dataset's files among `names`, in the table's order: series_id, then time. Python
    orders strings by code point, which is the byte order of UTF-8 that polars sorts series_id
    by, so the decoded ids sort as ingest numbered the series."""
    keyed = [(key, name) for name in names if (key := parse_name(name)) is not None]
    return [name for _, name in sorted(keyed)]


def chunk_start(day: dt.date, granularity: str) -> dt.date:
    """The first day of the chunk holding `day` (as `chunk_expr` gives it)."""
    if granularity == "week":
        return day - dt.timedelta(days=day.weekday())
    return day.replace(day=1) if granularity == "month" else day


def next_chunk(start: dt.date, granularity: str) -> dt.date:
    if granularity == "month":
        return (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return start + dt.timedelta(days=7 if granularity == "week" else 1)


_EPOCH = dt.date(1970, 1, 1)


def _date(us: int) -> dt.date:
    return _EPOCH + dt.timedelta(microseconds=int(us))


def _us(day: dt.date) -> int:
    return (day - _EPOCH).days * 86_400_000_000


def chunk_date(us: int) -> dt.date:
    """The date of a chunk's start given in µs since 1970."""
    return _date(us)


def chunk_us(chunk: str) -> int:
    """µs since 1970 of a chunk's start as its file name gives it (YYYY-MM-DD)."""
    return _us(dt.date.fromisoformat(chunk))


def chunk_runs(
    frame: pl.DataFrame, granularity: str, key: str
) -> list[tuple[int, dt.date, int, int]]:
    """(key, chunk, offset, length) of each run of rows of one (key, chunk), in row order, for
    a frame sorted by `key` then `timestamp`: each partition is then one zero-copy slice. Found
    per series by binary search of the chunk edges in its times (memory per series and chunk,
    not per row)."""
    keys = frame[key].to_numpy()
    times = frame["timestamp"].dt.convert_time_zone("UTC").to_physical().to_numpy()  # µs
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else []
    ends = np.r_[starts[1:], len(keys)] if len(keys) else []
    runs = []
    for a, b in zip(np.asarray(starts).tolist(), np.asarray(ends).tolist(), strict=True):
        chunk = chunk_start(_date(times[a]), granularity)
        last = _date(times[b - 1])
        while a < b:
            following = next_chunk(chunk, granularity)
            # the first row at or after the next chunk's start ends this one
            cut = a + int(np.searchsorted(times[a:b], _us(following), side="left"))
            if cut > a:
                runs.append((int(keys[a]), chunk, a, cut - a))
            a, chunk = cut, following
            if chunk > last:
                break
    return runs


def write_partition(frame: pl.DataFrame, root: Path, series_id: str, chunk: dt.date) -> str:
    """Write one partition file under `root`; its name relative to `root`. Refuses to write a
    file twice (a frame not sorted by series and time would split a partition)."""
    name = partition_name(series_id, chunk)
    path = root / name
    if path.exists():
        raise RuntimeError(f"{name} written twice: rows not sorted by series_id, timestamp")
    path.parent.mkdir(parents=True, exist_ok=True)
    # one chunk in memory: row groups follow from the rows alone, not from how the batch was
    # built, so the same rows give the same bytes. zstd level 2, not the default 3: ~15% faster
    # on sensor data and no larger (level 1 is faster still but writes a 48% larger file)
    frame.rechunk().write_parquet(path, compression="zstd", compression_level=2)
    return name


def write_partitions(frame: pl.DataFrame, root: Path, granularity: str) -> list[tuple[str, int]]:
    """Write `frame` (rows of whole series, any columns including `series_id` and `timestamp`,
    in any order) as its partition files under `root`; (name relative to root, rows) for each,
    in table order. Rows keep their order inside a file."""
    keyed = frame.with_columns(chunk_expr(granularity).alias("__chunk"))
    written = []
    parts = keyed.partition_by("series_id", "__chunk", maintain_order=True, as_dict=True)
    for (series_id, chunk), part in parts.items():
        name = write_partition(part.drop("__chunk"), root, str(series_id), chunk)
        written.append((name, part.height))
    return sorted(written, key=lambda item: parse_name(item[0]))


def scan_series(paths: list[Path]) -> pl.LazyFrame:
    """The table as one lazy scan over its files (`paths` in table order, as `ordered` lists
    them): exactly the files' columns, no hive columns (`series`, `chunk`), so readers see the
    same table whether it is one file or many. Filters and projections reach the reader."""
    if not paths:
        raise ValueError("a series dataset without files")
    return pl.scan_parquet([Path(p) for p in paths], hive_partitioning=False)


@dataclass(frozen=True)
class SeriesSource:
    """The series table of one ingest directory: its files in table order, verified."""

    where: Path  # the dataset folder (or a schema_version 1 series.parquet), named in messages
    files: tuple[Path, ...]
    description: dict[str, Any]  # how a downstream manifest records it (`inputs`)
    series_of: tuple[str | None, ...]  # each file's series_id (None: a file of every series)

    def __str__(self) -> str:
        return str(self.where)

    def scan(self, only: set[str] | None = None) -> pl.LazyFrame:
        """The table, or with `only` the files of those series (a chunk of series opens its
        own files, not all of them; a schema_version 1 file is always read whole)."""
        if only is None:
            return scan_series(list(self.files))
        pairs = zip(self.files, self.series_of, strict=True)
        files = [f for f, series in pairs if series is None or series in only]
        return scan_series(files) if files else scan_series(list(self.files)).head(0)

    def columns(self) -> list[str]:
        return list(pl.read_parquet_schema(self.files[0]))


def open_series(upstream: StageInput) -> SeriesSource:
    """The series table of an opened ingest directory, every file's bytes checked against its
    manifest (BadInputError naming a damaged one). A schema_version 1 directory (one
    series.parquet) is read too: the same table in one file."""
    names = ordered(upstream.dataset_names(DATASET))
    if names:
        files = tuple(upstream.file(n) for n in names)
        series = tuple(parse_name(n)[0] for n in names)
        where = upstream.path / DATASET
        return SeriesSource(where, files, upstream.describe(f"{DATASET}/"), series)
    if V1_FILE in upstream.manifest.get("outputs", {}):
        path = upstream.file(V1_FILE)
        return SeriesSource(path, (path,), upstream.describe(V1_FILE), (None,))
    raise BadInputError(
        f"{upstream.path}: its manifest.json lists no {DATASET}/ files; rerun `tsfm ingest`"
    )


def dataset_files(directory: Path | str) -> list[Path]:
    """The series table's files of an ingest directory, in table order, as its manifest lists
    them (not verified: for looking, e.g. `tsfm inspect` and tests; stages use `open_series`).
    A schema_version 1 directory gives its one series.parquet."""
    from tsfm_cli.stagedir import read_manifest

    directory = Path(directory)
    outputs = (read_manifest(directory) or {}).get("outputs", {})
    names = ordered(outputs) or [n for n in (V1_FILE,) if n in outputs]
    return [directory / n for n in names]


def read_series(directory: Path | str) -> pl.DataFrame:
    """The whole series table of an ingest directory (small data: tests, notebooks)."""
    files = dataset_files(directory)
    if not files:
        raise BadInputError(f"{directory}: no series files in its manifest.json")
    return scan_series(files).collect()


def write_dataset(writer: Any, frame: pl.DataFrame, granularity: str = "month") -> int:
    """`frame` as the series dataset of a StageWriter's directory, each file registered with
    its rows (fixtures and benchmarks that make an ingest directory without ingest); the
    number of files."""
    written = write_partitions(frame, writer.dir, granularity)
    for name, rows in written:
        writer.register(name, rows=rows)
    return len(written)
