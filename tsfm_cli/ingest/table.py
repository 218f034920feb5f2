"""Lines → a table of string cells, one column per header name.

Everything is vectorised over a polars column of lines: comment and blank lines are recognised
with string ops, fields are counted with `count_matches`, and well-formed lines are split with
`split_exact`. Lines with the wrong number of fields (a file still being written, a ragged export)
become line rejects with their line number.
"""

from __future__ import annotations

import re

import polars as pl

from tsfm_cli.ingest.sniff import WHITESPACE, Sniffed

REJECT_SCHEMA = {
    "file": pl.String,
    "line": pl.Int64,
    "column": pl.String,
    "raw": pl.String,
    "reason": pl.String,
}


def raw_name(name: str) -> str:
    """Cell columns are named `raw:<header>` so no header can clash with our own columns."""
    return f"raw:{name}"


def rejects_frame(file: str, frame: pl.DataFrame | None = None) -> pl.DataFrame:
    """A rejects table for `file` from a frame with line/column/raw/reason (or an empty one)."""
    if frame is None or frame.height == 0:
        return pl.DataFrame(schema=REJECT_SCHEMA)
    return frame.select(
        pl.lit(file, pl.String).alias("file"),
        pl.col("line").cast(pl.Int64),
        pl.col("column").cast(pl.String),
        pl.col("raw").cast(pl.String),
        pl.col("reason").cast(pl.String),
    )


def split_table(
    sniffed: Sniffed, comment_prefixes: list[str]
) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """(cells with a `line` column, line rejects, counts) for the data part of a file."""
    n_fields = len(sniffed.names)
    total = len(sniffed.lines)
    body = pl.DataFrame(
        {
            "line": pl.int_range(sniffed.data_start + 1, total + 1, dtype=pl.Int64, eager=True),
            "raw": sniffed.lines.slice(sniffed.data_start),
        }
    )
    stripped = pl.col("raw").str.strip_chars()
    is_comment = pl.lit(False)
    for prefix in comment_prefixes:
        if prefix:
            is_comment = is_comment | stripped.str.starts_with(prefix)
    body = body.with_columns(
        blank=stripped.str.len_bytes() == 0,
        comment=is_comment,
    )
    if sniffed.delimiter == WHITESPACE:
        delim = " "
        text = stripped.str.replace_all(r"\s+", " ")
    else:
        delim = sniffed.delimiter
        text = pl.col("raw")
    trailing = re.escape(delim) + r"[\s" + re.escape(delim) + r"]*$"
    body = body.with_columns(text=text).with_columns(
        count=pl.col("text").str.count_matches(delim, literal=True) + 1,
        count_trimmed=pl.col("text")
        .str.replace(trailing, "")
        .str.count_matches(delim, literal=True)
        + 1,
    )
    last_line = total
    ok_width = (pl.col("count") == n_fields) | (
        (pl.col("count") > n_fields) & (pl.col("count_trimmed") <= n_fields)
    )
    truncated = (pl.col("line") == last_line) & pl.lit(not sniffed.ends_with_newline)
    reason = (
        pl.when(pl.col("comment"))
        .then(pl.lit("comment line"))
        .when(~ok_width & truncated)
        .then(
            pl.format(
                "truncated last line ({} of {} fields; file still being written?)",
                pl.col("count"),
                pl.lit(n_fields),
            )
        )
        .when(~ok_width)
        .then(pl.format("wrong number of fields ({} of {})", pl.col("count"), pl.lit(n_fields)))
        .otherwise(None)
    )
    body = body.filter(~pl.col("blank")).with_columns(reason=reason)
    bad = body.filter(pl.col("reason").is_not_null()).select(
        "line", pl.lit(None, pl.String).alias("column"), "raw", "reason"
    )
    good = body.filter(pl.col("reason").is_null())
    fields = [f"field_{i}" for i in range(n_fields)]
    cells = good.select(
        "line",
        pl.col("text").str.split_exact(delim, n_fields - 1).struct.rename_fields(fields),
    ).unnest("text")
    cleanup = pl.col(fields).str.strip_chars().str.strip_chars('"').str.strip_chars()
    cells = cells.with_columns(cleanup).rename(
        {f: raw_name(n) for f, n in zip(fields, sniffed.names, strict=True)}
    )
    counts = {
        "lines_total": total,
        "lines_header": sniffed.data_start - len(sniffed.preamble),
        "lines_preamble": len(sniffed.preamble),
        "lines_blank": int(total - sniffed.data_start - body.height),
        "lines_data": body.height,
    }
    return cells, bad, counts
