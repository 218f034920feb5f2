"""String cells → Float32 values plus flags: sentinels, junk text, decimal commas, thousands."""

from __future__ import annotations

import polars as pl

from tsfm_cli.ingest.config import IngestConfig
from tsfm_cli.schema import Flag


def sentinel_sets(config: IngestConfig) -> tuple[list[str], list[float]]:
    """(lower-case text sentinels, numeric sentinels) from the recipe's lists."""
    text, numbers = [], []
    for entry in [*config.sentinels, *config.extra_sentinels]:
        entry = str(entry).strip()
        try:
            number = float(entry)
        except ValueError:
            text.append(entry.lower())
            continue
        if number == number and abs(number) != float("inf"):
            numbers.append(number)
        else:
            text.append(entry.lower())
    return text, numbers


def number_expr(col: pl.Expr, decimal: str, thousands: str | None) -> pl.Expr:
    """A string column → Float64 (null where it is not a number)."""
    if thousands:
        sep = {".": r"\.", ",": ",", " ": " "}.get(thousands, thousands)
        dec = r"\." if decimal == "." else ","
        grouped = rf"^([+-]?\d{{1,3}}(?:{sep}\d{{3}})+(?:{dec}\d+)?)$"
        col = pl.when(col.str.contains(grouped)).then(col.str.replace_all(sep, "")).otherwise(col)
    if decimal == ",":
        col = col.str.replace(",", ".", literal=True)
    return col.cast(pl.Float64, strict=False)


def clean_column(
    name: str, decimal: str, thousands: str | None, text_sentinels: list[str], numbers: list[float]
) -> tuple[pl.Expr, pl.Expr]:
    """(value Float64, flags UInt16) expressions for string column `name` (already stripped)."""
    raw = pl.col(name)
    empty = raw.is_null() | (raw.str.len_bytes() == 0)
    parsed = number_expr(raw, decimal, thousands)
    text_sentinel = (
        raw.str.to_lowercase().is_in(text_sentinels) if text_sentinels else pl.lit(False)
    )
    number_sentinel = parsed.is_in(numbers).fill_null(False) if numbers else pl.lit(False)
    not_finite = (~parsed.is_finite()).fill_null(False)
    sentinel = ~empty & (text_sentinel.fill_null(False) | number_sentinel | not_finite)
    unparseable = ~empty & ~sentinel & parsed.is_null()
    flags = (
        pl.when(empty)
        .then(pl.lit(int(Flag.MISSING)))
        .when(sentinel)
        .then(pl.lit(int(Flag.SENTINEL)))
        .when(unparseable)
        .then(pl.lit(int(Flag.UNPARSEABLE)))
        .otherwise(pl.lit(0))
        .cast(pl.UInt16)
    )
    value = pl.when(empty | sentinel | unparseable).then(None).otherwise(parsed)
    return value, flags
