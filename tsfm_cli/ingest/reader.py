"""One source file end to end: bytes → readings + rejects + counts.

A reading is (line, sensor, group keys, timestamp UTC, value Float32, flags); a wide file's
readings are kept in the file's shape, one row per line, until `long_readings`. Grid, duplicates
and faults are decided later over all files of a series (`grid`, `faults`).
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from tsfm_cli.errors import BadInputError
from tsfm_cli.ingest.config import IngestConfig
from tsfm_cli.ingest.groups import sensor_name
from tsfm_cli.ingest.sniff import sniff
from tsfm_cli.ingest.table import raw_name, read_cells, rejects_frame, transpose_cells
from tsfm_cli.ingest.timestamps import find_time_columns, localize, parse_times, start_times
from tsfm_cli.ingest.values import clean_columns, clean_series, sentinel_sets
from tsfm_cli.schema import Flag

SENSOR_COLUMN = re.compile(
    r"^(tag|tagname|tag_name|sensor|signal|variable|channel|point|name|item)$", re.I
)
VALUE_COLUMN = re.compile(r"^(value|val|wert|reading|measurement|pv|messwert)$", re.I)

VALUE, FLAGS = "value:", "flags:"  # column prefixes of a wide file's readings


def _pick(names: list[str], configured: str | None, pattern: re.Pattern) -> str | None:
    if configured:
        if configured not in names:
            raise BadInputError(f"no column '{configured}'; columns: {names}")
        return configured
    return next((n for n in names if pattern.match(n.strip())), None)


def read_source(
    path: Path, keys: dict[str, str], config: IngestConfig, data: bytes | None = None
) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """(readings, rejects, stats) for one file (or its bytes `data`, as read and hashed by the
    caller); BadInputError when the file is unusable."""
    file = str(path)
    try:
        sn = sniff(path, config, data)
        cells, bad_lines, counts = read_cells(sn, config.comment_prefixes)
        names, units, line_of = sn.names, sn.units, None
        if config.transposed:
            if not (config.start and config.interval):
                raise BadInputError("a transposed file has no times: set start and interval")
            cells, names, line_of = transpose_cells(cells, names, config.columns)
            units = [None] * len(names)
        readings, cell_rejects, stats = _readings(names, units, cells, sn, keys, config, line_of)
    except BadInputError as exc:
        message = str(exc)
        if not message.startswith(file):
            message = f"{file}: {message}"
        raise BadInputError(message) from None
    rejects = [rejects_frame(file, bad_lines), rejects_frame(file, cell_rejects)]
    if sn.preamble:
        pre = pl.DataFrame({"line": sn.preamble}).with_columns(
            column=pl.lit(None, pl.String),
            raw=pl.Series([sn.head[i - 1] for i in sn.preamble], dtype=pl.String),
            reason=pl.lit("preamble line"),
        )
        rejects.insert(0, rejects_frame(file, pre))
    stats.update(counts)
    stats.update(
        encoding=sn.encoding,
        delimiter={"\t": "tab"}.get(sn.delimiter, sn.delimiter),
        decimal=sn.decimal,
        thousands=sn.thousands,
        header_line=sn.header_line,
    )
    return readings, pl.concat(rejects), stats


def _readings(names, units, cells: pl.DataFrame, sn, keys, config, line_of=None):
    """`line_of`: the line of each column's values where a column is not a line's (transposed)."""
    if len(names) < 2 and not (config.start and config.interval):
        raise BadInputError(
            "only one column found (delimiter not recognised?); set `delimiter` in the recipe"
        )
    time_cols, how = find_time_columns(names, cells, config)
    if not time_cols:
        if not (config.start and config.interval):
            raise BadInputError(
                f"no timestamp column recognised (columns: {', '.join(names[:8])}); set "
                "timestamp_column, or start and interval for a file without times"
            )
        ts_expr = start_times(config)
    else:
        ts_expr, _ = parse_times(cells, time_cols, how, config)
    cells = cells.with_columns(timestamp=ts_expr, flags=pl.lit(0, pl.UInt16))
    bad_time = cells.filter(pl.col("timestamp").is_null())
    time_rejects = bad_time.select(
        "line",
        pl.lit(time_cols[0] if time_cols else None, pl.String).alias("column"),
        pl.concat_str([pl.col(raw_name(c)) for c in time_cols], separator=" ").alias("raw")
        if time_cols
        else pl.lit(None, pl.String).alias("raw"),
        pl.lit("unparseable timestamp").alias("reason"),
    )
    if bad_time.height:  # (a filter copies every column, for nothing when all times parse)
        cells = cells.filter(pl.col("timestamp").is_not_null())

    group_cols = list(config.group_columns)
    for col in group_cols:
        if col not in names:
            raise BadInputError(f"no column '{col}' (recipe key group_columns); columns: {names}")
    sensor_col = _pick(names, config.sensor_column, SENSOR_COLUMN)
    value_col = _pick(names, config.value_column, VALUE_COLUMN)
    long = line_of is None and (
        config.layout == "long"
        or (config.layout == "auto" and sensor_col is not None and value_col is not None)
    )
    if long and (sensor_col is None or value_col is None):
        raise BadInputError("layout long needs sensor_column and value_column")
    by = [sensor_col] if long else []
    cells = localize(cells, config.timezone, [raw_name(c) for c in by + group_cols])

    text_sentinels, number_sentinels = sentinel_sets(config)
    decimal, thousands = sn.decimal, sn.thousands
    unit_of: dict[str, str | None] = {}
    ignored: list[str] = []
    column_decimals: dict[str, str] = {}  # columns parsed with the other decimal mark
    if long:
        value, flags, mark = _clean_wide_column(
            cells[raw_name(value_col)], decimal, thousands, text_sentinels, number_sentinels
        )
        if mark != decimal:
            column_decimals[value_col] = mark
        value, flags = pl.lit(value), pl.lit(flags)
        cleaned = cells.with_columns(
            sensor=pl.col(raw_name(sensor_col))
            .str.replace_all(r"[^0-9a-zA-Z]+", "_")
            .str.strip_chars("_")
            .str.to_lowercase(),
            _v=value,
            _f=flags | pl.col("flags"),
        )
        cleaned = cleaned.with_columns(
            sensor=pl.when(pl.col("sensor").str.len_bytes() > 0)
            .then("sensor")
            .otherwise(pl.lit("value"))
        )
        readings = cleaned.select(
            pl.col("line").cast(pl.Int32).alias("raw_line"),
            "sensor",
            *[pl.col(raw_name(c)).alias(c) for c in group_cols],
            "timestamp",
            pl.col("_v").cast(pl.Float32).alias("value"),
            pl.col("_f").alias("flags"),
        )
        cell_rejects = _cell_rejects(
            cleaned, raw_name(value_col), "_f", column=pl.col(raw_name(sensor_col))
        )
    else:
        sensors = [n for n in names if n not in time_cols and n not in group_cols]
        columns = _clean_wide_columns(
            cells, sensors, decimal, thousands, text_sentinels, number_sentinels
        )
        exprs, seen = [], {}
        for i, (name, (value, flags, mark)) in enumerate(zip(sensors, columns, strict=True)):
            sensor, unit = sensor_name(name)
            if sensor in seen:
                seen[sensor] += 1
                sensor = f"{sensor}_{seen[sensor]}"
            seen.setdefault(sensor, 1)
            pos = names.index(name)
            unit_of[sensor] = unit or (units[pos] if pos < len(units) else None)
            if mark != decimal:
                column_decimals[name] = mark
            exprs.append(
                (name, sensor, value.alias(f"_v{i}"), (flags | cells["flags"]).alias(f"_f{i}"))
            )
        cleaned = cells.with_columns([e for _, _, v, f in exprs for e in (v, f)])
        # columns with no number at all (labels, comments, empty) are not sensors
        usable = (
            cleaned.select(
                [pl.col(f"_v{i}").is_not_null().any().alias(str(i)) for i in range(len(exprs))]
            ).row(0)
            if exprs and cleaned.height
            else [True] * len(exprs)
        )
        kept, rejects, lines = [], [], {}
        for i, (name, sensor, _, _) in enumerate(exprs):
            if not usable[i]:
                ignored.append(name)
                unit_of.pop(sensor, None)
                rejects.append(_ignored_column(cleaned, name))
                continue
            kept.append((i, sensor))
            line = pl.lit(line_of[name], pl.Int64) if line_of else pl.col("line")
            lines[sensor] = line
            rejects.append(
                _cell_rejects(cleaned, raw_name(name), f"_f{i}", column=pl.lit(name), line=line)
            )
        if not kept:
            raise BadInputError(f"no numeric sensor column (columns: {', '.join(names[:8])})")
        if line_of:  # one line per sensor: no shared line column, the readings stay long
            readings = pl.concat(
                cleaned.select(
                    lines[sensor].cast(pl.Int32).alias("raw_line"),
                    pl.lit(sensor, pl.Categorical).alias("sensor"),
                    "timestamp",
                    pl.col(f"_v{i}").cast(pl.Float32).alias("value"),
                    pl.col(f"_f{i}").alias("flags"),
                )
                for i, sensor in kept
            )
        else:
            readings = cleaned.select(
                pl.col("line").cast(pl.Int32).alias("raw_line"),
                *[pl.col(raw_name(c)).cast(pl.String).alias(c) for c in group_cols],
                "timestamp",
                *[pl.col(f"_v{i}").cast(pl.Float32).alias(f"{VALUE}{s}") for i, s in kept],
                *[pl.col(f"_f{i}").alias(f"{FLAGS}{s}") for i, s in kept],
            )
        cell_rejects = pl.concat(rejects)
    if cleaned.height == 0 and time_rejects.height == 0:
        raise BadInputError("no data lines")
    stats = {
        "group_columns": group_cols,
        "units": unit_of,
        "ignored_columns": ignored,
        "time_columns": time_cols,
        "layout": "long" if long else "wide",
    }
    if column_decimals:
        stats["column_decimals"] = column_decimals
    return readings, pl.concat([time_rejects, cell_rejects]), stats


def _clean_wide_column(raw: pl.Series, decimal, thousands, text_sentinels, numbers):
    """`clean_series` with the file's decimal mark, or with the other one when that parses more
    cells: a comma file can hold a quoted decimal-comma column ("20,5") next to `1.5` values.
    Returns (values, flags, the mark used)."""
    value, flags = clean_series(raw, decimal, thousands, text_sentinels, numbers)
    return _other_mark(raw, value, flags, decimal, text_sentinels, numbers)


def _clean_wide_columns(cells: pl.DataFrame, names: list[str], decimal, thousands, text, numbers):
    """`_clean_wide_column` of the cell columns of `names`, parsed together (`clean_columns`)."""
    raw_names = [raw_name(n) for n in names]
    columns = clean_columns(cells, raw_names, decimal, thousands, text, numbers)
    return [
        _other_mark(cells[r], value, flags, decimal, text, numbers)
        for r, (value, flags) in zip(raw_names, columns, strict=True)
    ]


def _other_mark(raw: pl.Series, value, flags, decimal, text_sentinels, numbers):
    """(values, flags, mark) of `raw` read with `decimal`, or with the other mark where that
    parses more of its cells."""
    other = "," if decimal == "." else "."
    # only when a cell that did not parse looks like a number with the other mark (cheap: the
    # unparseable cells are few); a column of junk text is not parsed twice
    bad = raw.filter((flags & int(Flag.UNPARSEABLE)) != 0)
    if not bad.str.contains(rf"^[+-]?\d*{re.escape(other)}\d+$").any():
        return value, flags, decimal
    value2, flags2 = clean_series(raw, other, None, text_sentinels, numbers)
    if value2.is_not_null().sum() > value.is_not_null().sum():
        return value2, flags2, other
    return value, flags, decimal


def _ignored_column(cells: pl.DataFrame, name: str) -> pl.DataFrame:
    """One reject row for a column left out because no cell in it is a number (a label or
    comment column): where it starts, how many cells it had and the first of them."""
    col = pl.col(raw_name(name))
    filled = cells.select("line", col.alias("raw")).filter(
        pl.col("raw").is_not_null() & (pl.col("raw").str.len_bytes() > 0)
    )
    count = filled.height
    return filled.head(1).select(
        "line",
        pl.lit(name, pl.String).alias("column"),
        "raw",
        pl.lit(
            f"column not used: none of its {count} non-empty cells is a number (a label column? "
            "set exclude_sensors, or decimal/delimiter if it holds numbers)"
        ).alias("reason"),
    )


def is_wide(readings: pl.DataFrame | pl.LazyFrame) -> bool:
    """Whether `read_source` gave the readings of a wide file in its own shape."""
    return "value" not in readings.collect_schema()


def reading_count(readings: pl.DataFrame) -> int:
    """Cells read: rows × sensors for a wide file's readings."""
    if not is_wide(readings):
        return readings.height
    return readings.height * sum(1 for name in readings.columns if name.startswith(VALUE))


def long_readings(
    readings: pl.LazyFrame, keys: dict[str, str], group_cols: list[str]
) -> pl.LazyFrame:
    """Readings one row per cell (raw_line, sensor, group columns, timestamp, value, flags, path
    keys). A wide file's readings are kept wide, one row per line (`VALUE`/`FLAGS` + sensor
    columns): a third of the size to cache, and each sensor's readings are a slice of the line
    columns. The path's keys are the same for every reading of a file: they are added here,
    not cached."""
    if is_wide(readings):
        names = readings.collect_schema().names()
        readings = pl.concat(
            readings.select(
                "raw_line",
                # categorical: one dictionary entry, not a string per reading
                pl.lit(name.removeprefix(VALUE), pl.Categorical).alias("sensor"),
                *group_cols,
                "timestamp",
                pl.col(name).alias("value"),
                pl.col(name.replace(VALUE, FLAGS, 1)).alias("flags"),
            )
            for name in names
            if name.startswith(VALUE)
        )
    return readings.with_columns(
        pl.lit(value, pl.Categorical).alias(key)
        for key, value in keys.items()
        if key not in group_cols
    )


def _cell_rejects(
    frame: pl.DataFrame,
    raw_col: str,
    flag_col: str,
    column: pl.Expr,
    line: pl.Expr | None = None,
) -> pl.DataFrame:
    bad = int(Flag.SENTINEL | Flag.UNPARSEABLE)
    # only the columns needed are filtered, not the whole (wide) frame
    return (
        frame.select(
            pl.col("line") if line is None else line.alias("line"),
            column.cast(pl.String).alias("column"),
            pl.col(raw_col).alias("raw"),
            pl.col(flag_col).alias("_flag"),
        )
        .filter((pl.col("_flag") & bad) != 0)
        .select(
            "line",
            "column",
            "raw",
            pl.when((pl.col("_flag") & int(Flag.SENTINEL)) != 0)
            .then(pl.lit("sentinel"))
            .otherwise(pl.lit("unparseable value"))
            .alias("reason"),
        )
    )
