"""Ingest's line accounting and summary: every data line of every file is used by the grid or
rejected (`lines_data` = `lines_used` + `lines_rejected`), counted with one bitmap over the lines
of all files instead of hashing millions of rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from tsfm_cli.ingest.report import GATED
from tsfm_cli.schema import Flag


def series_units(files_meta: dict[str, dict]) -> dict[str, str]:
    """series_id → unit, from the units found in the files' headers."""
    units = {}
    for meta in files_meta.values():
        prefix = "/".join(str(v) for v in meta.get("keys", {}).values())
        for sensor, unit in (meta.get("units") or {}).items():
            if unit:
                units[f"{prefix}/{sensor}" if prefix else sensor] = unit
    return units


def line_bitmap(file_index: np.ndarray, lines: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The lines of all files in one bitmap, file i's `sizes[i]` lines after those of the files
    before it: True where a (file, line) occurs. Negative files or lines are none."""
    base = np.concatenate([[0], np.cumsum(sizes)])
    bits = np.zeros(base[-1], dtype=bool)
    size = np.where(file_index >= 0, sizes[file_index], 0)
    ok = (lines >= 0) & (lines < size)
    bits[base[file_index[ok]] + lines[ok]] = True
    return bits


def per_file(bits: np.ndarray, sizes: np.ndarray) -> list[int]:
    """True lines per file of a `line_bitmap`."""
    ends = np.concatenate([[0], np.cumsum(bits, dtype=np.int64)])[np.cumsum(sizes)]
    return np.diff(ends, prepend=0).tolist()


def ingest_summary(
    counts, rejects, report, files, files_meta, failed, gate_on, carried=frozenset()
) -> dict[str, Any]:
    """`counts`: (bitmap of the lines used by the grid, lines per file, points, observed).
    The files in `carried` keep the line accounting of their manifest entry (a rerun that
    cleaned none of the chunks their lines sit in)."""
    # used lines per file as bitmaps over line numbers: no hashing of millions of rows
    used, sizes, points, observed = counts
    index_of = {file: i for i, file in enumerate(files)}
    line_rejects = rejects.filter(
        pl.col("line").is_not_null() & (pl.col("reason") != "preamble line")
    ).select(
        pl.col("file").replace_strict(index_of, default=-1, return_dtype=pl.Int32).alias("_file"),
        pl.col("line").cast(pl.Int64),
    )
    rejected = line_bitmap(line_rejects["_file"].to_numpy(), line_rejects["line"].to_numpy(), sizes)
    rejected &= ~used
    used_count, rejected_count = per_file(used, sizes), per_file(rejected, sizes)
    lines_data = lines_used = lines_rejected = 0
    for file, meta in files_meta.items():
        i = index_of[file]
        if file not in carried:
            u, r = used_count[i], rejected_count[i]
            meta.update(lines_used=u, lines_rejected=r, unaccounted=meta["lines_data"] - u - r)
        lines_data += meta["lines_data"]
        lines_used += meta["lines_used"]
        lines_rejected += meta["lines_rejected"]
    flag_counts = {
        flag.name.lower(): int(report[flag.name.lower()].sum()) if report.height else 0
        for flag in Flag
    }
    worst = report.sort("missing_frac", descending=True).head(1)
    shares = {}
    for name, share in (*(("absent", "absent_frac"), ("fault", "fault_frac")), ("gate", None)):
        expr = GATED[gate_on] if share is None else pl.col(share)
        top = report.select("series_id", expr.alias("_share")).sort("_share", descending=True)
        top = top.head(1)
        shares[f"worst_{name}_series"] = top["series_id"].item() if top.height else None
        shares[f"worst_{name}_frac"] = round(float(top["_share"].item()), 6) if top.height else 0.0
    return {
        "series": report.height,
        "points": points,
        "observed": observed,
        "missing_frac": round(1 - observed / points, 6) if points else 1.0,
        "worst_series": worst["series_id"].item() if worst.height else None,
        "worst_missing_frac": round(float(worst["missing_frac"].item()), 6)
        if worst.height
        else 0.0,
        "lines_data": lines_data,
        "lines_used": lines_used,
        "lines_rejected": lines_rejected,
        "lines_unaccounted": lines_data - lines_used - lines_rejected,
        "rejects": rejects.height,
        "flags": flag_counts,
        **shares,
        "gate_on": gate_on,
        "failed_files": failed,
    }
