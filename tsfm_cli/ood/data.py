"""The plant in memory: every series' grid as flat numpy arrays plus per-series metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from tsfm_cli.errors import BadInputError
from tsfm_cli.schema import SERIES_COLUMNS

REQUIRED = (*SERIES_COLUMNS, "freq_s")
NOT_GROUP_KEYS = ("timestamp", "value", "observed", "flags")
# per-reading columns of series.parquet that are not a property of the series
NOT_CARRIED = (*SERIES_COLUMNS, "freq_s", "raw_line")


@dataclass
class Plant:
    """Rows of series.parquet in file order (sorted by series_id, timestamp).

    ts [R] int64 µs UTC, values [R] float32 (NaN where not observed), observed [R] bool;
    series i occupies rows offsets[i] : offsets[i] + lengths[i].
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


def columns_of(path: Path) -> list[str]:
    return list(pl.read_parquet_schema(path))


def check_columns(path: Path, columns: list[str]) -> None:
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise BadInputError(
            f"{path}: missing column(s) {', '.join(missing)} (not an ingest output?)"
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


def load_plant(
    path: Path, keys: list[str], custom: dict[str, pl.Expr], carried: list[str] = ()
) -> Plant:
    """Read series.parquet into flat arrays (no per-row Python); per-series columns once.
    `keys` and `carried` are per-series columns (their first value is taken)."""
    carried = list(carried)
    keys = list(dict.fromkeys([*keys, *carried]))
    scan = pl.scan_parquet(path)
    meta_cols = [c for c in dict.fromkeys(["sensor", "freq_s", *keys]) if c != "series_id"]
    meta = (
        scan.group_by("series_id", maintain_order=True)
        .agg(pl.len().alias("__len"), *[pl.col(c).first() for c in meta_cols])
        .collect()
    )
    custom_cols = [
        expr.fill_null(False).cast(pl.Boolean).alias(f"__custom_{n}") for n, expr in custom.items()
    ]
    try:
        frame = scan.select(
            pl.col("timestamp").dt.epoch("us").alias("ts"),
            pl.col("value").cast(pl.Float32),
            pl.col("observed").fill_null(False),
            *custom_cols,
        ).collect()
    except pl.exceptions.PolarsError as exc:
        raise BadInputError(f"{path}: cannot evaluate the custom conditions ({exc})") from exc
    values = frame["value"].fill_null(np.nan).to_numpy()
    observed = frame["observed"].to_numpy() & np.isfinite(values)
    values = np.where(observed, values, np.float32(np.nan)).astype(np.float32, copy=False)
    ts = frame["ts"].to_numpy()
    custom_rows = {n: frame[f"__custom_{n}"].to_numpy() for n in custom}
    del frame
    lengths = meta["__len"].to_numpy().astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    ids = meta["series_id"].cast(pl.String).to_list()
    runs = scan.select((pl.col("series_id") != pl.col("series_id").shift()).sum() + 1).collect()
    starts = np.zeros(len(ts), dtype=bool)
    starts[offsets[lengths > 0]] = True
    if len(ts) and (runs.item() != len(ids) or ((np.diff(ts) <= 0) & ~starts[1:]).any()):
        raise BadInputError(
            f"{path}: rows are not sorted by series_id, timestamp (ingest contract)"
        )
    return Plant(
        ts=ts,
        values=values,
        observed=observed,
        offsets=offsets,
        lengths=lengths,
        series_ids=ids,
        sensors=meta["sensor"].cast(pl.String).to_list(),
        freq_s=meta["freq_s"].to_numpy().astype(np.int64),
        groups={k: np.array(meta[k].cast(pl.String).to_list(), dtype=object) for k in keys},
        custom=custom_rows,
        carried=carried,
    )
