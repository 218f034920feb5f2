"""`run_ingest`: sources → clean/ (series.parquet, rejects.parquet, report.parquet, quality.png).

Incremental: each source file is parsed once into `parts/<key>.parquet` (+ `.rejects.parquet`),
keyed by its content hash, path and the parse settings. A rerun reuses the parts of unchanged
files (hard links) and parses only new or changed ones; the grid, fault and report steps are then
rebuilt from all parts, so rows are never duplicated. Same files + same config ⇒ nothing at all.
"""

from __future__ import annotations

import glob
import hashlib
from pathlib import Path, PurePath
from typing import Any

import polars as pl

from tsfm_cli.errors import BadInputError, QualityGateError
from tsfm_cli.ingest.config import PARSE_KEYS, IngestConfig, for_file
from tsfm_cli.ingest.faults import detect_faults
from tsfm_cli.ingest.fill import fill_gaps
from tsfm_cli.ingest.grid import add_series_id, build_grid
from tsfm_cli.ingest.groups import keys_from_path
from tsfm_cli.ingest.reader import read_source
from tsfm_cli.ingest.report import build_report, quality_plot
from tsfm_cli.ingest.table import REJECT_SCHEMA
from tsfm_cli.recipe import config_dict
from tsfm_cli.schema import Flag
from tsfm_cli.stagedir import (
    StageWriter,
    canonical_json,
    describe_file,
    fingerprint,
    fresh_manifest,
    require_new_output,
)
from tsfm_cli.ui import Reporter

SUFFIXES = (".csv", ".tsv", ".txt", ".dat")
STAGE = "ingest"


def find_sources(inputs: list[Path | str], out_dir: Path) -> list[tuple[Path, PurePath]]:
    """(file, path used for group keys) for every source; BadInputError for a missing path."""
    found: dict[Path, PurePath] = {}
    out_resolved = Path(out_dir).resolve()

    def wanted(path: Path) -> bool:
        name = path.name.lower().removesuffix(".gz")
        return name.endswith(SUFFIXES) and not path.name.startswith(".")

    for item in inputs:
        text = str(item)
        if any(ch in text for ch in "*?["):
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True))
            files = [p for p in matches if p.is_file()]
            if not files:
                raise BadInputError(f"{text}: no file matches this pattern")
            root = Path(text.split("*")[0].split("?")[0].split("[")[0]).parent
            for p in files:
                found.setdefault(p, _relative(p, root))
            continue
        path = Path(item)
        if not path.exists():
            raise BadInputError(f"{path}: no such file or directory")
        if path.is_dir():
            files = [
                p
                for p in sorted(path.rglob("*"))
                if p.is_file()
                and wanted(p)
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
                and out_resolved not in p.resolve().parents
            ]
            if not files:
                raise BadInputError(
                    f"{path}: no .csv/.tsv/.txt/.dat files (optionally .gz) in this folder"
                )
            for p in files:
                found.setdefault(p, p.relative_to(path))
        else:
            found.setdefault(path, PurePath(path.parent.name) / path.name)
    return list(found.items())


def _relative(path: Path, root: Path) -> PurePath:
    try:
        return path.relative_to(root)
    except ValueError:
        return PurePath(path.parent.name) / path.name


def _part_key(file_sha: str, path: str, parse_settings: dict) -> str:
    text = canonical_json({"sha": file_sha, "path": path, "parse": parse_settings})
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def run_ingest(
    inputs: list[Path | str],
    out_dir: Path | str,
    config: IngestConfig,
    *,
    reporter: Reporter | None = None,
    command: list[str] | None = None,
    wait_s: float = 0.0,
) -> dict[str, Any]:
    reporter = reporter or Reporter()
    out_dir = Path(out_dir)
    sources = find_sources(inputs, out_dir)
    require_new_output(out_dir, [p for p, _ in sources])
    described = [describe_file(p) for p, _ in sources]
    cfg = config_dict(config)
    fp = fingerprint(cfg, described)
    fresh = fresh_manifest(out_dir, STAGE, fp)
    if fresh is not None:
        summary = dict(fresh.get("summary", {}))
        summary.update(out_dir=str(out_dir), skipped=True, files_parsed=0)
        _gate(summary, config)
        return summary

    with StageWriter(
        out_dir, STAGE, config=cfg, inputs=described, command=command, wait_s=wait_s
    ) as writer:
        previous = (writer.previous_manifest() or {}).get("files", {})
        files_meta: dict[str, dict] = {}
        failed: list[dict[str, str]] = []
        parts: list[tuple[int, str, str]] = []  # (file index, file, part key)
        parsed = reused = 0
        with reporter.progress("ingest", total=len(sources), unit="files") as task:
            for index, ((path, rel), desc) in enumerate(zip(sources, described, strict=True)):
                file = str(path)
                file_config = for_file(config, rel.as_posix())
                file_settings = {k: getattr(file_config, k) for k in PARSE_KEYS}
                key = _part_key(desc["sha256"], rel.as_posix(), file_settings)
                part, part_rejects = f"parts/{key}.parquet", f"parts/{key}.rejects.parquet"
                old = previous.get(file)
                task.update(status=path.name)
                if old and old.get("part") == key and (out_dir / part).is_file():
                    writer.carry_over(part)
                    writer.carry_over(part_rejects)
                    writer.register(part)
                    writer.register(part_rejects)
                    files_meta[file] = old
                    parts.append((index, file, key))
                    reused += 1
                else:
                    keys = keys_from_path(rel, file_config.group_pattern)
                    try:
                        readings, rejects, stats = read_source(path, keys, file_config)
                    except BadInputError as exc:
                        failed.append({"file": file, "reason": str(exc)})
                    except Exception as exc:  # noqa: BLE001 - one odd file must not stop the rest
                        failed.append(
                            {
                                "file": file,
                                "reason": f"{file}: internal error {type(exc).__name__}: {exc}",
                            }
                        )
                    else:
                        writer.write_parquet(part, readings)
                        writer.write_parquet(part_rejects, rejects)
                        files_meta[file] = {
                            **stats,
                            "part": key,
                            "keys": keys,
                            "readings": readings.height,
                        }
                        parts.append((index, file, key))
                        parsed += 1
                task.advance(1)
        if failed and (config.strict or not parts):
            raise BadInputError(failed[0]["reason"])
        for item in failed:
            reporter.warn(item["reason"])
        summary = _assemble(writer, parts, files_meta, failed, config)
        summary.update(files=len(sources), files_parsed=parsed, files_reused=reused)
        writer.commit(summary=summary, files=files_meta)
    summary.update(out_dir=str(out_dir), skipped=False)
    _gate(summary, config)
    return summary


def _gate(summary: dict, config: IngestConfig) -> None:
    if config.max_missing is None:
        return
    worst = summary.get("worst_missing_frac", 0.0) or 0.0
    if worst > config.max_missing:
        summary["quality_gate"] = "failed"
        raise QualityGateError(
            f"quality gate: series {summary.get('worst_series')} is {worst:.1%} missing "
            f"(--max-missing {config.max_missing:g}); outputs were written to {summary['out_dir']}",
            summary,
        )
    summary["quality_gate"] = "passed"


def _assemble(writer: StageWriter, parts, files_meta, failed, config) -> dict[str, Any]:
    frames = []
    key_cols: list[str] = []
    for index, file, key in parts:
        meta = files_meta[file]
        for k in list(meta.get("keys", {})) + list(config.group_columns):
            if k not in key_cols:
                key_cols.append(k)
        frames.append(
            pl.scan_parquet(writer.dir / f"parts/{key}.parquet").with_columns(
                source=pl.lit(file, pl.String), _file=pl.lit(index, pl.Int32)
            )
        )
    readings = add_series_id(pl.concat(frames, how="diagonal_relaxed"), key_cols).collect()
    grid, dup_rejects = build_grid(readings, key_cols, config)
    del readings
    grid = detect_faults(grid, config)
    grid = fill_gaps(grid, config)
    columns = [
        "series_id",
        "source",
        "sensor",
        "timestamp",
        "value",
        "observed",
        "flags",
        "freq_s",
        "raw_line",
        *key_cols,
    ]
    grid = grid.select(
        pl.col("series_id"),
        pl.col("source"),
        pl.col("sensor"),
        pl.col("timestamp"),
        pl.col("value").cast(pl.Float32),
        pl.col("observed"),
        pl.col("flags").cast(pl.UInt16),
        pl.col("freq_s"),
        pl.col("raw_line").cast(pl.Int32),
        *[pl.col(k).cast(pl.String) for k in key_cols],
    )
    assert grid.columns == columns
    writer.write_parquet("series.parquet", grid)

    rejects = [pl.scan_parquet(writer.dir / f"parts/{key}.rejects.parquet") for _, _, key in parts]
    failed_rows = pl.DataFrame(
        {
            "file": [f["file"] for f in failed],
            "line": [None] * len(failed),
            "column": [None] * len(failed),
            "raw": [None] * len(failed),
            "reason": [f"file not ingested: {f['reason']}" for f in failed],
        },
        schema=REJECT_SCHEMA,
    )
    all_rejects = pl.concat([*[r.collect() for r in rejects], dup_rejects, failed_rows])
    writer.write_parquet("rejects.parquet", all_rejects)

    units = {}
    for file, meta in files_meta.items():
        del file
        prefix = "/".join(str(v) for v in meta.get("keys", {}).values())
        for sensor, unit in (meta.get("units") or {}).items():
            if unit:
                units[f"{prefix}/{sensor}" if prefix else sensor] = unit
    report = build_report(grid, key_cols, units)
    writer.write_parquet("report.parquet", report)
    quality_plot(grid, writer.dir / "quality.png")
    writer.register("quality.png")
    return _summary(grid, all_rejects, report, files_meta, failed)


def _summary(grid, rejects, report, files_meta, failed) -> dict[str, Any]:
    used = (
        grid.filter(pl.col("raw_line").is_not_null())
        .group_by("source")
        .agg(pl.col("raw_line").unique().alias("lines"))
    )
    used_lines = {row["source"]: set(row["lines"]) for row in used.iter_rows(named=True)}
    line_rejects = (
        rejects.filter(pl.col("line").is_not_null() & (pl.col("reason") != "preamble line"))
        .group_by("file")
        .agg(pl.col("line").unique().alias("lines"))
    )
    rejected_lines = {row["file"]: set(row["lines"]) for row in line_rejects.iter_rows(named=True)}
    lines_data = lines_used = lines_rejected = 0
    for file, meta in files_meta.items():
        u = used_lines.get(file, set())
        r = rejected_lines.get(file, set()) - u
        meta.update(
            lines_used=len(u),
            lines_rejected=len(r),
            unaccounted=meta["lines_data"] - len(u) - len(r),
        )
        lines_data += meta["lines_data"]
        lines_used += len(u)
        lines_rejected += len(r)
    flag_counts = {
        flag.name.lower(): int(report[flag.name.lower()].sum()) if report.height else 0
        for flag in Flag
    }
    worst = report.sort("missing_frac", descending=True).head(1)
    points = grid.height
    observed = int(grid["observed"].sum()) if points else 0
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
        "failed_files": failed,
    }
