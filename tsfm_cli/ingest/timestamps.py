"""Which column holds the time, how it is written, and plant-local time → UTC.

Formats are tried on a sample and the best one is applied to the whole column with one
`str.to_datetime`. Naive timestamps are plant time when a `timezone` is set: the repeated hour
of the DST fall-back is kept in order (first occurrence = earlier UTC instant) and flagged
TIME_AMBIGUOUS; times in the spring-forward gap are shifted forward by the gap and flagged too.
"""

from __future__ import annotations

import datetime as dt
import re

import polars as pl

from tsfm_cli.errors import BadInputError
from tsfm_cli.ingest.config import IngestConfig, parse_duration
from tsfm_cli.ingest.table import raw_name
from tsfm_cli.schema import Flag

AWARE = [
    "%Y-%m-%dT%H:%M:%S%.f%z",
    "%Y-%m-%d %H:%M:%S%.f%z",
    "%Y-%m-%dT%H:%M%z",
    "%Y-%m-%d %H:%M%z",
]
NAIVE = [
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%d.%m.%y %H:%M:%S",
    "%d.%m.%y %H:%M",
    "%m/%d/%Y %I:%M:%S %p",
    "%m/%d/%Y %I:%M %p",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%Y-%m-%d",
    "%d.%m.%Y",
    "%m/%d/%Y",
    "%d/%m/%Y",
]
TIME_OF_DAY = re.compile(r"^\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?(\s?[AaPp]\.?[Mm]\.?)?$")
TIME_NAME = re.compile(r"(time|date|zeit|datum|timestamp|^ts$|epoch|datetime|uhrzeit)", re.I)
SAMPLE = 500
EPOCH_RANGES = {"s": (3e8, 5e9), "ms": (3e11, 5e12)}


def _normalise(col: pl.Expr, fmt: str | None = None) -> pl.Expr:
    """Z → +00:00 so that %z reads it; AM/PM in one spelling. Given the format, only the
    rewrites it can use (a format without a z or p fails on such a value either way)."""
    col = col.str.strip_chars()
    if fmt is None or "z" in fmt.lower():
        col = col.str.replace(r"(?i)z$", "+00:00")
    if fmt is None or "p" in fmt.lower():
        col = col.str.replace(r"(?i)\s*a\.?m\.?$", " AM").str.replace(r"(?i)\s*p\.?m\.?$", " PM")
    return col


def _best_format(sample: pl.Series, formats: list[str], aware: bool) -> tuple[str | None, int]:
    best, hits = None, 0
    for fmt in formats:
        kwargs = {"time_zone": "UTC"} if aware else {}
        try:
            parsed = sample.str.to_datetime(fmt, strict=False, time_unit="us", **kwargs)
        except pl.exceptions.PolarsError:
            continue
        n = len(sample) - parsed.null_count()
        if n > hits:
            best, hits = fmt, n
    return best, hits


def _first_non_empty(values: pl.Series, count: int) -> pl.Series:
    """The first `count` non-blank values, looking at no more of the column than needed."""
    n = count * 4
    while True:
        head = values.head(n)
        found = head.filter(head.str.strip_chars().str.len_bytes() > 0)
        if len(found) >= count or n >= len(values):
            return found.head(count)
        n *= 8


def detect_format(values: pl.Series) -> tuple[str | None, bool, float]:
    """(format, aware, fraction parsed) on a sample of non-empty values."""
    sample = (
        _first_non_empty(values, SAMPLE).to_frame("v").select(_normalise(pl.col("v"))).to_series()
    )
    if len(sample) == 0:
        return None, False, 0.0
    fmt_a, hits_a = _best_format(sample, AWARE, aware=True)
    fmt_n, hits_n = _best_format(sample, NAIVE, aware=False)
    if hits_a >= hits_n and fmt_a is not None:
        return fmt_a, True, hits_a / len(sample)
    return fmt_n, False, hits_n / len(sample)


def _epoch_unit(values: pl.Series) -> str | None:
    nums = values.head(SAMPLE).cast(pl.Float64, strict=False).drop_nulls()
    if len(nums) == 0 or len(nums) < 0.9 * min(len(values), SAMPLE):
        return None
    lo, hi = nums.min(), nums.max()
    for unit, (a, b) in EPOCH_RANGES.items():
        if a <= lo and hi <= b:
            return unit
    return None


def find_time_columns(
    names: list[str], cells: pl.DataFrame, config: IngestConfig
) -> tuple[list[str], str]:
    """The column(s) that hold the time and how: 'text', 'epoch_s', 'epoch_ms' or 'counter'."""
    for key in ("timestamp_column", "date_column", "time_column"):
        name = getattr(config, key)
        if name and name not in names:
            raise BadInputError(f"no column '{name}' (recipe key {key}); columns: {names}")
    if config.date_column and config.time_column:
        return [config.date_column, config.time_column], "text"
    if config.timestamp_column:
        col = cells[raw_name(config.timestamp_column)]
        if config.start and config.interval and _is_counter(col):
            return [config.timestamp_column], "counter"
        unit = _epoch_unit(col)
        return [config.timestamp_column], f"epoch_{unit}" if unit else "text"
    named = [n for n in names if TIME_NAME.search(n)]
    candidates = named + [n for n in names[:2] if n not in named]
    for name in candidates:
        col = cells[raw_name(name)]
        fmt, _, frac = detect_format(col)
        if fmt is not None and frac >= 0.5:
            # a date-only column followed by a time-of-day column
            if "%H" not in fmt and "%I" not in fmt:
                pos = names.index(name)
                if pos + 1 < len(names):
                    nxt = cells[raw_name(names[pos + 1])].head(SAMPLE).drop_nulls()
                    if len(nxt) and nxt.str.contains(TIME_OF_DAY.pattern).mean() >= 0.5:
                        return [name, names[pos + 1]], "text"
            return [name], "text"
        if name in named:
            unit = _epoch_unit(col)
            if unit:
                return [name], f"epoch_{unit}"
    return [], "none"


def _is_counter(col: pl.Series) -> bool:
    nums = col.head(SAMPLE).cast(pl.Float64, strict=False)
    return nums.null_count() == 0 and len(nums) > 0


def parse_times(
    cells: pl.DataFrame, columns: list[str], how: str, config: IngestConfig, fmt: str | None = None
) -> tuple[pl.Expr | pl.Series, bool]:
    """The parsed timestamp (naive or UTC; an expression, or the column read already) and
    whether it is UTC-aware."""
    if how == "epoch_s":
        secs = pl.col(raw_name(columns[0])).cast(pl.Float64, strict=False)
        return (secs * 1e6).cast(pl.Int64).cast(pl.Datetime("us", "UTC")), True
    if how == "epoch_ms":
        ms = pl.col(raw_name(columns[0])).cast(pl.Float64, strict=False)
        return (ms * 1e3).cast(pl.Int64).cast(pl.Datetime("us", "UTC")), True
    if how == "counter":
        start = parse_start(config)
        step = parse_duration(config.interval, "interval") * 1_000_000
        counter = pl.col(raw_name(columns[0])).cast(pl.Float64, strict=False)
        ts = pl.lit(start) + pl.duration(microseconds=(counter * step).cast(pl.Int64))
        return _aware_if(ts, config)
    text = pl.concat_str([pl.col(raw_name(c)) for c in columns], separator=" ")
    if config.timestamp_format:
        fmt, aware = config.timestamp_format, "%z" in config.timestamp_format
    else:
        sample = cells.select(text.alias("t")).to_series()
        fmt, aware, frac = detect_format(sample)
        if fmt is None:
            raise BadInputError(f"column '{columns[0]}': no timestamp format fits its values")
    kwargs = {"time_zone": "UTC"} if aware else {}
    parsed = _normalise(text, fmt).str.to_datetime(fmt, strict=False, time_unit="us", **kwargs)
    whole = fmt.replace("%.f", "")
    if whole == fmt:
        return parsed, aware
    normal = cells.select(_normalise(text, fmt)).to_series()
    if not _fits_as(normal, whole, fmt, kwargs):
        return parsed, aware
    return _parse_fallback(normal, whole, fmt, kwargs), aware


def _fits_as(values: pl.Series, whole: str, fmt: str, kwargs: dict) -> bool:
    """Whether the sample of `values` parses as well without fractional seconds as with them."""
    sample = _first_non_empty(values, SAMPLE)
    with_frac = sample.str.to_datetime(fmt, strict=False, time_unit="us", **kwargs)
    without = sample.str.to_datetime(whole, strict=False, time_unit="us", **kwargs)
    return with_frac.null_count() < len(sample) and without.null_count() == with_frac.null_count()


def _parse_fallback(values: pl.Series, whole: str, fmt: str, kwargs: dict) -> pl.Series:
    """`values` parsed with `fmt`, most of them by the same format without `%.f`: polars reads
    a format with `%.f` several times slower (no fast path), and a time without a fraction
    reads the same either way. Only what the whole-second format leaves null is read again
    with `fmt` (a time with a fraction, or junk)."""
    # no cache of unique strings: times are mostly all different, and the fast path without
    # it is faster even when they repeat
    parsed = values.str.to_datetime(whole, strict=False, time_unit="us", cache=False, **kwargs)
    rows = (parsed.is_null() & values.is_not_null()).arg_true()
    if len(rows) == 0:
        return parsed
    again = values.gather(rows).str.to_datetime(fmt, strict=False, time_unit="us", **kwargs)
    return parsed.scatter(rows, again)


def _aware_if(ts: pl.Expr, config: IngestConfig) -> tuple[pl.Expr, bool]:
    """A `start` with an offset (or Z) is UTC; a naive one is plant time like any other."""
    if start_is_aware(config):
        return ts.dt.replace_time_zone("UTC"), True
    return ts, False


def start_is_aware(config: IngestConfig) -> bool:
    text = str(config.start)
    return text.endswith(("Z", "z")) or bool(re.search(r"[+-]\d{2}:?\d{2}$", text))


def start_times(config: IngestConfig) -> pl.Expr:
    """Row i of a file without times: start + i × interval."""
    step = parse_duration(config.interval, "interval") * 1_000_000
    ts = pl.lit(parse_start(config)) + pl.duration(
        microseconds=pl.int_range(pl.len(), dtype=pl.Int64) * step
    )
    return _aware_if(ts, config)[0]


def parse_start(config: IngestConfig) -> dt.datetime:
    try:
        start = dt.datetime.fromisoformat(str(config.start).replace("Z", "+00:00"))
    except ValueError:
        raise BadInputError(f"start: '{config.start}' is not an ISO date/time") from None
    if start.tzinfo is not None:
        start = start.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return start


def localize(frame: pl.DataFrame, tz: str | None, by: list[str]) -> pl.DataFrame:
    """Naive `timestamp` (plant time in `tz`, or UTC) → UTC, flagging DST ambiguity in `flags`."""
    if frame.schema["timestamp"] == pl.Datetime("us", "UTC"):
        return frame
    if not tz or tz == "UTC":
        return frame.with_columns(pl.col("timestamp").dt.replace_time_zone("UTC"))
    ts = pl.col("timestamp")
    early = ts.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")
    late = ts.dt.replace_time_zone(tz, ambiguous="latest", non_existent="null")
    frame = frame.with_columns(_early=early, _late=late)
    ambiguous = pl.col("_early") != pl.col("_late")
    gap = pl.col("_early").is_null() & ts.is_not_null()
    if not frame.select((ambiguous | gap).any()).item():
        return frame.with_columns(timestamp=pl.col("_early").dt.convert_time_zone("UTC")).drop(
            "_early", "_late"
        )
    # the repeated hour: in file order, once the local time has jumped back by half an hour or
    # more, the rest of that day's ambiguous times are the second (later) pass
    amb_ts = pl.when(ambiguous).then(ts)
    day = ts.dt.date()
    running = amb_ts.cum_max().shift(1).over([day, *by])
    jumped = (amb_ts < running - pl.duration(minutes=20)).fill_null(False)
    repeated = pl.int_range(pl.len()).over(["timestamp", *by]) > 0  # hourly data: 02:00 twice
    second = (jumped.cast(pl.Int8).cum_max().over([day, *by]) > 0) | repeated
    # a clock that has not sprung forward yet: read it with the offset before the change
    shifted = (ts + pl.duration(hours=1)).dt.replace_time_zone(
        tz, ambiguous="earliest", non_existent="null"
    )
    utc = (
        pl.when(gap)
        .then(shifted)
        .when(ambiguous & second)
        .then(pl.col("_late"))
        .otherwise(pl.col("_early"))
        .dt.convert_time_zone("UTC")
    )
    flag = pl.when(ambiguous | gap).then(pl.lit(int(Flag.TIME_AMBIGUOUS), pl.UInt16)).otherwise(0)
    return frame.with_columns(
        timestamp=utc,
        flags=(pl.col("flags") | flag).cast(pl.UInt16),
    ).drop("_early", "_late")
