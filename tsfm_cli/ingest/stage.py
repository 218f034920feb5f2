"""`run_ingest`: sources → clean/ (series/, rejects.parquet, report.parquet, quality.png).

Incremental: each source file is parsed once into `parts/<key>.parquet` (+ `.rejects.parquet`),
keyed by its content hash, path and the parse settings. A rerun reuses the parts of unchanged
files (hard links) and parses only new or changed ones; the grid, fault and report steps are then
rebuilt from all parts, so rows are never duplicated. Same files + same config ⇒ nothing at all.
"""

from __future__ import annotations

import glob
import hashlib
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import polars as pl

from tsfm_cli.errors import BadInputError, QualityGateError
from tsfm_cli.ingest.clean import clean, margin_points, margin_us
from tsfm_cli.ingest.config import PARSE_KEYS, IngestConfig, for_file, format_duration
from tsfm_cli.ingest.grid import MAX_GRID_FACTOR, MAX_GRID_SLACK, series_table
from tsfm_cli.ingest.groups import keys_from_path
from tsfm_cli.ingest.reader import long_readings, read_source, reading_count
from tsfm_cli.ingest.report import (
    GATED,
    PLOT_BINS,
    PLOT_MAX_SERIES,
    StateBins,
    add_plot_states,
    combine_report,
    quality_plot,
    report_parts,
)
from tsfm_cli.ingest.sniff import CHUNK, LineLimit
from tsfm_cli.ingest.stretches import Stretch, plan, series_spans
from tsfm_cli.ingest.table import REJECT_SCHEMA
from tsfm_cli.recipe import config_dict
from tsfm_cli.schema import Flag
from tsfm_cli.series_dataset import CHUNK_EVERY, check_ids, chunk_runs, resolve, write_partition
from tsfm_cli.stagedir import (
    StageWriter,
    canonical_json,
    claim_output,
    describe_file,
    fingerprint,
    parse_shard,
    require_new_output,
    reuse_summary,
    shard_dir,
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
            files = [p for p in matches if not p.is_dir()]
            if not files:
                raise BadInputError(f"{text}: no file matches this pattern")
            root = Path(text.split("*")[0].split("?")[0].split("[")[0]).parent
            for p in files:
                found.setdefault(p, _relative(p, root))
            continue
        path = Path(item)
        if not path.exists() and not path.is_symlink():
            raise BadInputError(f"{path}: no such file or directory")
        if path.is_dir():
            files = [
                p
                for p in sorted(path.rglob("*"))
                # a dangling link or a fifo is kept: reported in failed_files, not skipped unseen
                if not p.is_dir()
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


CACHE_FORMAT = 4  # 2: wide files cached wide; 3: no path keys cached; 4: per-column decimal


def _part_key(file_sha: str, path: str, parse_settings: dict) -> str:
    text = canonical_json(
        {"sha": file_sha, "path": path, "parse": parse_settings, "cache": CACHE_FORMAT}
    )
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def run_ingest(
    inputs: list[Path | str],
    out_dir: Path | str,
    config: IngestConfig,
    *,
    reporter: Reporter | None = None,
    command: list[str] | None = None,
    wait_s: float = 0.0,
    shard: str = "0/1",
) -> dict[str, Any]:
    """With `shard` "i/n" (n > 1) only the files whose content hash falls in share i are parsed,
    into `OUT-shard-i-of-n/parts/`, and nothing else is built; a final run without a shard
    reuses those parts (verified by sha256) and builds series, rejects and report."""
    reporter = reporter or Reporter()
    try:
        shard_index, shard_count = parse_shard(shard)
    except ValueError as exc:
        raise BadInputError(f"--shard: {exc}") from None
    final_dir = Path(out_dir)
    out_dir = shard_dir(final_dir, shard_index, shard_count)
    claim_output(out_dir, STAGE, [Path(i) for i in inputs if not any(c in str(i) for c in "*?[")])
    sources = find_sources(inputs, out_dir)
    require_new_output(out_dir, [p for p, _ in sources])
    described, unreadable = _describe(sources)
    if unreadable and (len(unreadable) == len(sources) or config.strict):
        raise BadInputError(unreadable[0]["reason"])
    readable = [
        (s, d)
        for s, d in zip(sources, described, strict=True)
        if "sha256" in d and int(d["sha256"][:12], 16) % shard_count == shard_index
    ]
    if shard_index > 0:  # files that cannot be read are reported by shard 0 and the merge
        unreadable = []
    sources, described = [s for s, _ in readable], [d for _, d in readable]
    # unreadable files are inputs too: one that becomes readable (or goes away) is a change
    inputs = described + [
        {"path": u["file"], "sha256": None, "bytes": None, "unreadable": u["reason"]}
        for u in unreadable
    ]
    cfg = config_dict(config)
    if shard_count > 1:  # a shard's directory holds other files than the merged output
        cfg = {**cfg, "shard": f"{shard_index}/{shard_count}"}
    fp = fingerprint(cfg, inputs)
    reused = reuse_summary(out_dir, STAGE, fp, reporter)
    if reused is not None:
        reused["files_parsed"] = 0
        _gate(reused, config)
        return reused

    with StageWriter(
        out_dir, STAGE, config=cfg, inputs=inputs, command=command, wait_s=wait_s
    ) as writer:
        previous_manifest = writer.previous_manifest() or {}
        previous = previous_manifest.get("files", {})
        cached = previous_manifest.get("outputs", {})  # what the parts' bytes must hash to
        # the parts that `--shard` runs left next to the output (merged by a run without shard)
        sharded = shard_parts(final_dir) if shard_count == 1 else {}
        files_meta: dict[str, dict] = {}
        failed: list[dict[str, str]] = list(unreadable)
        # (file index, file, part key, readings of a file parsed now, None for a reused part)
        parts: list[tuple[int, str, str, pl.DataFrame | None]] = []
        parsed = reused = rows_done = held = 0
        with reporter.progress("ingest", total=len(sources), unit="files") as task:
            for index, ((path, rel), desc) in enumerate(zip(sources, described, strict=True)):
                file = str(path)
                file_config = for_file(config, rel.as_posix())
                file_settings = {k: getattr(file_config, k) for k in PARSE_KEYS}
                key = _part_key(desc["sha256"], rel.as_posix(), file_settings)
                part, part_rejects = f"parts/{key}.parquet", f"parts/{key}.rejects.parquet"
                old, origin, recorded = previous.get(file), writer.out_dir, cached
                if not (old and old.get("part") == key) and file in sharded:
                    old, origin, recorded = sharded[file]
                task.update(status=f"{rows_done:,} lines · {path.name}")
                if (
                    old
                    and old.get("part") == key
                    and _carry_part(writer, recorded, (part, part_rejects), file, reporter, origin)
                ):
                    files_meta[file] = {**old, "relative": rel.as_posix()}
                    parts.append((index, file, key, None))
                    reused += 1
                else:
                    keys = keys_from_path(rel, file_config.group_pattern)
                    try:
                        data = _read_as_hashed(path, desc, file_config.max_line_bytes)
                        readings, rejects, stats = read_source(path, keys, file_config, data)
                        del data
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
                        # the cache is rewritten often and read once, whole: fast lz4, not zstd,
                        # and no statistics (nothing filters it by row group)
                        (writer.dir / "parts").mkdir(exist_ok=True)
                        readings.write_parquet(
                            writer.dir / part, compression="lz4", statistics=False
                        )
                        writer.register(part, rows=readings.height)
                        writer.write_parquet(part_rejects, rejects)
                        files_meta[file] = {
                            **stats,
                            "part": key,
                            "relative": rel.as_posix(),
                            "keys": keys,
                            "readings": reading_count(readings),
                        }
                        # kept in memory for the grid up to one batch of readings; the rest
                        # are read back from their parts (memory bounded by the batch)
                        count = files_meta[file]["readings"]
                        keep = held + count <= BATCH_READINGS
                        held += count if keep else 0
                        parts.append((index, file, key, readings if keep else None))
                        del readings
                        parsed += 1
                rows_done += files_meta.get(file, {}).get("lines_data", 0)
                task.advance(1, status=f"{rows_done:,} lines")
        if failed and (config.strict or not parts):
            raise BadInputError(failed[0]["reason"])
        for item in failed:
            reporter.warn(item["reason"])
        if shard_count > 1:  # parts only: the run without a shard builds the rest
            summary = {"shard": f"{shard_index}/{shard_count}", "failed_files": failed}
            summary.update(files=len(sources), files_parsed=parsed, files_reused=reused)
            writer.commit(summary=summary, files=files_meta)
            return {**summary, "out_dir": str(out_dir), "skipped": False}
        summary = _assemble(writer, parts, files_meta, failed, config)
        summary.update(
            files=len(sources) + len(unreadable), files_parsed=parsed, files_reused=reused
        )
        writer.commit(summary=summary, files=files_meta)
    summary.update(out_dir=str(out_dir), skipped=False)
    _gate(summary, config)
    return summary


def shard_parts(out_dir: Path) -> dict[str, tuple[dict, Path, dict]]:
    """file → (its manifest entry, the shard directory, that directory's outputs) for every file
    parsed by a `--shard` run of `out_dir` (the newest shard run wins for a file in several)."""
    from tsfm_cli.stagedir import read_manifest

    found: dict[str, tuple[dict, Path, dict]] = {}
    shards = sorted(out_dir.parent.glob(f"{glob.escape(out_dir.name)}-shard-*-of-*"))
    for path in sorted(shards, key=lambda p: (p / "manifest.json").stat().st_mtime_ns
                       if (p / "manifest.json").is_file() else 0):  # fmt: skip
        manifest = read_manifest(path) if path.is_dir() else None
        if not manifest or manifest.get("stage") != STAGE:
            continue
        for file, meta in (manifest.get("files") or {}).items():
            found[file] = (meta, path, manifest.get("outputs", {}))
    return found


def _carry_part(
    writer: StageWriter,
    cached: dict,
    names: tuple[str, ...],
    file: str,
    reporter: Reporter,
    origin: Path,
) -> bool:
    """Carry a file's cached parts from `origin` (the previous output or a shard's directory)
    into the new directory if their bytes are what was written there; a missing or damaged part
    is named, discarded and False returned (the file is parsed again)."""
    for name in names:
        if not (origin / name).is_file():
            return False
    for name in names:
        writer.carry_over(name, origin)
        writer.register(name)  # hashes the bytes
        recorded = cached.get(name, {}).get("sha256")
        if writer.outputs[name]["sha256"] != recorded:
            reporter.warn(
                f"{origin / name}: cached part of {file} is damaged (sha256 differs); "
                "discarded, the file is parsed again"
            )
            for done in names:
                writer.outputs.pop(done, None)
                (writer.dir / done).unlink(missing_ok=True)
            return False
    return True


def _describe(sources) -> tuple[list[dict], list[dict[str, str]]]:
    """Each source's manifest entry (path, sha256, bytes), and the files that cannot be read
    (no permission, a dangling link) as failed_files entries: one such file does not stop
    the others. Unreadable files get an entry without a sha256 in the first list."""
    described, unreadable = [], []
    for path, rel in sources:
        if path.exists() and not path.is_file():  # opening a fifo would wait forever
            reason = f"{path}: cannot read (not a regular file: a fifo, socket or device)"
            unreadable.append({"file": str(path), "reason": reason})
            described.append({"path": str(path)})
            continue
        try:
            # a file's identity is its content and the relative path its group keys come from
            described.append({**describe_file(path), "relative": rel.as_posix()})
        except OSError as exc:
            why = "dangling symbolic link" if path.is_symlink() and not path.exists() else None
            reason = f"{path}: cannot read ({why or exc.strerror or type(exc).__name__})"
            unreadable.append({"file": str(path), "reason": reason})
            described.append({"path": str(path)})
    return described, unreadable


def _read_as_hashed(path: Path, desc: dict, max_line_bytes: int) -> bytearray:
    """The file's bytes, read once in chunks and checked against the sha256 its manifest entry
    recorded: what is parsed is exactly what was hashed. A file still being written (grown, or
    rewritten, since it was hashed) is a failed file, tried again on the next run. A plain
    text file with a line over `max_line_bytes` stops the read at that line (a 10 GB one-line
    file costs 1 MiB, not 10 GB); a .gz is checked while it is decompressed."""
    size = desc["bytes"]
    buffer = bytearray()  # grown chunk by chunk (realloc, not copies): a refused file is small
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            # a .gz's lines are checked while it is decompressed (sniff.gunzip_bounded)
            gzip = handle.read(2) == b"\x1f\x8b"
            handle.seek(0)
            lines = None if gzip else LineLimit(path, max_line_bytes)
            while len(buffer) < size:
                chunk = handle.read(min(CHUNK, size - len(buffer)))
                if not chunk:
                    break
                if lines is not None:
                    lines.feed(chunk)
                digest.update(chunk)
                buffer += chunk
            grew = bool(handle.read(1))
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None
    done = len(buffer)
    if grew or done != size or digest.hexdigest() != desc["sha256"]:
        now = path.stat().st_size if path.exists() else 0
        raise BadInputError(
            f"{path}: changed while being read ({size:,} bytes when hashed, {now:,} now; still "
            "being written?); it is read on the next run"
        )
    return buffer


def _gate(summary: dict, config: IngestConfig) -> None:
    """Exit 3 (QualityGateError, after the outputs are written) when a file was not ingested
    or a series misses more than `max_missing`: one line that cron shows even with --quiet."""
    problems = []
    failed = summary.get("failed_files") or []
    if failed:
        problems.append(
            f"{len(failed)} of {summary.get('files', len(failed))} files not ingested (first: "
            f"{failed[0]['reason']}); see failed_files in {summary['out_dir']}/manifest.json"
        )
    if config.max_missing is not None:
        worst = summary.get("worst_gate_frac", 0.0) or 0.0
        if worst > config.max_missing:
            what = {"absent": "absent", "faults": "flagged as faults", "both": "missing"}
            problems.append(
                f"series {summary.get('worst_gate_series')} is {worst:.1%} "
                f"{what[config.gate_on]} (--max-missing {config.max_missing:g}, gate_on "
                f"{config.gate_on}; worst absent {summary.get('worst_absent_frac', 0):.1%}, "
                f"worst faults {summary.get('worst_fault_frac', 0):.1%})"
            )
    if problems:
        summary["quality_gate"] = "failed"
        raise QualityGateError(
            f"quality gate: {'; '.join(problems)}; outputs were written to {summary['out_dir']}",
            summary,
        )
    if config.max_missing is not None:
        summary["quality_gate"] = "passed"


def _series_runs(frame: pl.LazyFrame, cols: list[str]) -> pl.DataFrame:
    """Runs of equal (keys, sensor) in file order: `_len` and the columns (no hashing of rows).

    A wide file has one run per sensor column, so the series of millions of readings are
    resolved by a join of a few rows instead of one join per reading.
    """
    return (
        frame.select(pl.struct(cols).rle().alias("_r"))
        .collect()
        .unnest("_r")
        .rename({"len": "_len"})
        .unnest("value")
    )


def sensor_globs(patterns: list[str]) -> str:
    """One case-insensitive regex matching a sensor name against any of the globs."""
    import fnmatch

    parts = [fnmatch.translate(p).replace(r"\Z", "$") for p in patterns]
    return "(?i)^(?:" + "|".join(parts) + ")"


def _assemble(writer: StageWriter, parts, files_meta, failed, config) -> dict[str, Any]:
    key_cols: list[str] = []
    files = [""] * (max((i for i, _, _, _ in parts), default=-1) + 1)
    for index, file, _, _ in parts:
        meta = files_meta[file]
        files[index] = file
        for k in list(meta.get("keys", {})) + list(meta.get("group_columns", [])):
            if k not in key_cols:
                key_cols.append(k)
    cols = [*key_cols, "sensor"]
    frames, runs = [], []
    for n, (index, file, key, frame) in enumerate(parts):
        # a file parsed in this run is still in memory: its cached part is not read back; the
        # list lets go of it so that its sensor and key strings are freed once resolved
        parts[n] = (index, file, key, None)
        lazy = (
            pl.scan_parquet(writer.dir / f"parts/{key}.parquet") if frame is None else frame.lazy()
        )
        meta = files_meta[file]
        lazy = long_readings(lazy, meta["keys"], meta.get("group_columns", []))
        if config.exclude_sensors:
            lazy = lazy.filter(
                ~pl.col("sensor").cast(pl.String).str.contains(sensor_globs(config.exclude_sensors))
            )
        frames.append((index, lazy))
        run = _series_runs(lazy, [c for c in cols if c in lazy.collect_schema()])
        runs.append(  # keys as strings (a part may hold them as categoricals), missing = null
            run.select(
                "_len",
                *[
                    pl.col(c).cast(pl.String)
                    if c in run.columns
                    else pl.lit(None, pl.String).alias(c)
                    for c in cols
                ],
            )
        )
        del frame
    names = series_table(pl.concat([r.lazy() for r in runs]), key_cols)
    if names.height == 0:
        used = [f for f in files if f]
        where = used[0] + (f" (and {len(used) - 1} more files)" if len(used) > 1 else "")
        excluded = (
            f" after exclude_sensors {config.exclude_sensors}" if config.exclude_sensors else ""
        )
        raise BadInputError(f"no sensor readings left in any file{excluded}: {where}")
    check_ids(names["series_id"])  # each is a folder name of the series dataset
    lookup = names.select("_sid", *cols)
    sids = []  # per part: the run's series, with the run lengths
    for run in runs:
        sid = run.join(lookup, on=cols, how="left", nulls_equal=True, maintain_order="left")
        sids.append((sid["_sid"].to_numpy(), run["_len"].to_numpy()))
    del runs
    # every file's readings tagged with their series, one file at a time: held while they fit
    # the budget, else spilled to _work/ and scanned back a stretch at a time
    held = sum(int(lengths.sum()) for _, lengths in sids) <= BATCH_READINGS
    work = writer.dir / "_work"  # spilled readings, removed before commit
    sources: list[pl.DataFrame | Path] = []
    if not held:
        work.mkdir()
    for n, (index, lazy) in enumerate(frames):
        frames[n] = None
        tagged = _tagged(lazy, *sids[n], index)
        if not held:
            sources.append(work / f"readings_{n}.parquet")
            tagged.write_parquet(sources[-1], compression="lz4")
        else:
            sources.append(tagged)
        del tagged
    del sids, frames
    scans = [pl.scan_parquet(p) if isinstance(p, Path) else p.lazy() for p in sources]
    spans, days = series_spans(scans, names.height, config, "1d")
    _check_spans(spans, names)
    granularity = resolve(config.partition, int(spans["step_us"].min()) // 1_000_000)
    chunk_every = CHUNK_EVERY[granularity]
    chunks = (  # readings per series and time chunk, from those per day
        days.with_columns(
            pl.col("_chunk").cast(pl.Datetime("us", "UTC")).dt.truncate(chunk_every).dt.epoch("us")
        )
        .group_by("_sid", "_chunk")
        .agg(pl.col("readings").sum())
        .sort("_sid", "_chunk")
    )
    stretches = plan(spans, chunks, BATCH_READINGS)
    # the readings a stretch's margins reach: its margin and one step of clock jitter more
    reach = spans.select(margin_us(margin_points(config, names)) + pl.col("step_us"))
    reach = reach.to_series().fill_null(0)

    def stretch_readings(stretch: Stretch) -> pl.DataFrame:
        in_stretch = pl.col("_sid").is_between(stretch.lo, stretch.hi - 1)
        if not stretch.whole:  # its chunks and the readings its margins reach
            near = int(reach[stretch.lo])
            at = pl.col("timestamp").dt.epoch("us")
            in_stretch &= at.is_between(stretch.t_lo - near, stretch.t_hi + near)
        if held:  # all fit the budget: one stretch, and the tagged frames are let go
            readings = pl.concat(sources)
            sources.clear()
            scans.clear()
            return readings
        # predicate pushdown: row groups of other series are skipped by their statistics
        return (
            pl.concat(scans).filter(in_stretch).with_columns(pl.col("_sid") - stretch.lo).collect()
        )

    # `source` is the path the group keys come from (relative to the folder given), not
    # where the folder lies: the same data elsewhere gives the same bytes (identity is content)
    relative = [files_meta[f].get("relative", f) if f else "" for f in files]
    units = _units(files_meta)
    sizes = np.array(
        [files_meta[f].get("lines_total", 0) + 2 if f in files_meta else 0 for f in files],
        dtype=np.int64,
    )
    used = np.zeros(int(sizes.sum()), dtype=bool)
    shown = min(names.height, PLOT_MAX_SERIES)
    points_of = spans["points"].fill_null(0)
    plot_bins = [StateBins(int(points_of[sid]), PLOT_BINS) for sid in range(shown)]
    report_rows, dup_rejects = [], []
    points = observed = partitions = 0
    # quality.png is drawn (holding the GIL) while the last stretch's files, the report and the
    # rejects are written and hashed (polars and hashlib release it); not earlier, so that the
    # drawing's memory never adds to a stretch being cleaned. Leaving the block waits for the
    # drawing, on errors too, so that nothing writes into the directory once it is discarded.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tsfm-plot") as pool:
        for number, stretch in enumerate(stretches):
            lo, hi = stretch.lo, stretch.hi
            own = names.slice(lo, hi - lo).with_columns(pl.col("_sid") - lo)
            readings = stretch_readings(stretch)
            span = None  # a run of whole series; else one series' chunks [t_lo, t_hi)
            if not stretch.whole:
                bounds = {"lo_us": pl.lit(stretch.t_lo), "hi_us": pl.lit(stretch.t_hi)}
                span = spans.slice(lo, 1).with_columns(_sid=pl.lit(0, pl.UInt32), **bounds)
            grid, dups = clean(readings, own, config, chunk_every=chunk_every, span=span)
            del readings
            report_rows.append(report_parts(grid).with_columns(pl.col("_sid") + lo))
            if lo < shown:
                add_plot_states(plot_bins, grid, spans, lo)
            if number == len(stretches) - 1:
                report = combine_report(report_rows, names, key_cols, files, units)
                plot = pool.submit(
                    quality_plot,
                    np.stack([b.colours() for b in plot_bins]) if plot_bins else None,
                    report,
                    writer.dir / "quality.png",
                )
            dup_rejects.append(dups)
            used |= _line_bitmap(
                grid["_file"].fill_null(-1).to_numpy(),
                grid["raw_line"].fill_null(-1).to_numpy(),
                sizes,
            )
            points += grid.height
            observed += int(grid["observed"].sum())
            partitions += _write_series(writer, grid, own, relative, key_cols, granularity)
            del grid
        report = combine_report(report_rows, names, key_cols, files, units)
        all_rejects = _write_rejects(writer, parts, pl.concat(dup_rejects), failed, files)
        writer.write_parquet("report.parquet", report.drop("_sid"))
        summary = _summary(
            (used, sizes, points, observed), all_rejects, report, files, files_meta, failed,
            config.gate_on,
        )  # fmt: skip
        summary.update(partition=granularity, partitions=partitions)
        plot.result()  # the drawing's error, if any, is the stage's error
    shutil.rmtree(work, ignore_errors=True)
    writer.register("quality.png")
    return summary


def _check_spans(spans: pl.DataFrame, names: pl.DataFrame) -> None:
    """BadInputError for a series whose timestamps span far more grid points than it has
    readings (a wrong clock or unit: the grid would not fit in memory)."""
    points = spans["points"]
    allowed = spans["readings"] * MAX_GRID_FACTOR + MAX_GRID_SLACK
    bad = (points > allowed).fill_null(False).arg_true()
    if len(bad):
        i = int(bad[0])
        raise BadInputError(
            f"series {names['series_id'][i]}: its timestamps span {points[i]:,} grid points of "
            f"{format_duration(int(spans['step_us'][i]) // 1_000_000)} for "
            f"{spans['readings'][i]:,} readings; check the timestamps or set `freq`"
        )


BATCH_READINGS = 6_000_000  # readings cleaned at once (a stretch, clean.py): ~0.5 GB of RAM


def _tagged(lazy: pl.LazyFrame, sid: np.ndarray, lengths: np.ndarray, index: int) -> pl.DataFrame:
    """A part's readings with their series (`_sid`, from its runs) and file (`_file`)."""
    return (
        lazy.select("raw_line", "timestamp", "value", "flags")
        .collect()
        .with_columns(
            _sid=pl.Series(np.repeat(sid, lengths), dtype=pl.UInt32),
            _file=pl.lit(index, pl.Int32),
        )
        .select("_sid", "_file", "raw_line", "timestamp", "value", "flags")
    )


def _write_series(writer: StageWriter, grid, names, files, key_cols, granularity: str) -> int:
    """A batch's grid (sorted by series then time) as its partition files, each registered
    with its rows; the number written. Each partition is a slice of the grid: the string
    columns are built for one partition at a time."""
    file_names = pl.Series("source", files, dtype=pl.String)
    series_ids = names["series_id"].cast(pl.String).to_list()

    def by_sid(column: str) -> pl.Expr:  # the series' own column, by position (no join)
        return pl.lit(names[column].cast(pl.String)).gather(pl.col("_sid")).alias(column)

    runs = chunk_runs(grid, granularity, "_sid")
    for sid, chunk, offset, length in runs:
        part = grid.slice(offset, length).select(
            by_sid("series_id"),
            pl.lit(file_names).gather(pl.col("_file")).alias("source"),
            by_sid("sensor"),
            "timestamp",
            pl.col("value").cast(pl.Float32),
            "observed",
            pl.col("flags").cast(pl.UInt16),
            "freq_s",
            pl.col("raw_line").cast(pl.Int32),
            *[by_sid(k) for k in key_cols],
        )
        name = write_partition(part, writer.dir, series_ids[sid], chunk)
        writer.register(name, rows=length)
    return len(runs)


def _write_rejects(writer: StageWriter, parts, dup_rejects, failed, files) -> pl.DataFrame:
    """rejects.parquet: the parse rejects of every file, duplicate readings, files not read."""
    file_names = pl.Series("file", files, dtype=pl.String)
    rejects = [
        pl.scan_parquet(writer.dir / f"parts/{key}.rejects.parquet") for _, _, key, _ in parts
    ]
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
    dup_rows = dup_rejects.select(
        pl.lit(file_names).gather(pl.col("_file")).alias("file"),
        "line",
        "column",
        "raw",
        "reason",
    )
    all_rejects = pl.concat([*[r.collect() for r in rejects], dup_rows, failed_rows])
    writer.write_parquet("rejects.parquet", all_rejects)
    return all_rejects


def _units(files_meta: dict[str, dict]) -> dict[str, str]:
    """series_id → unit, from the units found in the files' headers."""
    units = {}
    for meta in files_meta.values():
        prefix = "/".join(str(v) for v in meta.get("keys", {}).values())
        for sensor, unit in (meta.get("units") or {}).items():
            if unit:
                units[f"{prefix}/{sensor}" if prefix else sensor] = unit
    return units


def _line_bitmap(file_index: np.ndarray, lines: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The lines of all files in one bitmap, file i's `sizes[i]` lines after those of the files
    before it: True where a (file, line) occurs. Negative files or lines are none."""
    base = np.concatenate([[0], np.cumsum(sizes)])
    bits = np.zeros(base[-1], dtype=bool)
    size = np.where(file_index >= 0, sizes[file_index], 0)
    ok = (lines >= 0) & (lines < size)
    bits[base[file_index[ok]] + lines[ok]] = True
    return bits


def _per_file(bits: np.ndarray, sizes: np.ndarray) -> list[int]:
    """True lines per file of a `_line_bitmap`."""
    ends = np.concatenate([[0], np.cumsum(bits, dtype=np.int64)])[np.cumsum(sizes)]
    return np.diff(ends, prepend=0).tolist()


def _summary(counts, rejects, report, files, files_meta, failed, gate_on) -> dict[str, Any]:
    """`counts`: (bitmap of the lines used by the grid, lines per file, points, observed)."""
    # used lines per file as bitmaps over line numbers: no hashing of millions of rows
    used, sizes, points, observed = counts
    index_of = {file: i for i, file in enumerate(files)}
    line_rejects = rejects.filter(
        pl.col("line").is_not_null() & (pl.col("reason") != "preamble line")
    ).select(
        pl.col("file").replace_strict(index_of, default=-1, return_dtype=pl.Int32).alias("_file"),
        pl.col("line").cast(pl.Int64),
    )
    rejected = _line_bitmap(
        line_rejects["_file"].to_numpy(), line_rejects["line"].to_numpy(), sizes
    )
    rejected &= ~used
    used_count, rejected_count = _per_file(used, sizes), _per_file(rejected, sizes)
    lines_data = lines_used = lines_rejected = 0
    for file, meta in files_meta.items():
        i = index_of[file]
        u, r = used_count[i], rejected_count[i]
        meta.update(lines_used=u, lines_rejected=r, unaccounted=meta["lines_data"] - u - r)
        lines_data += meta["lines_data"]
        lines_used += u
        lines_rejected += r
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
