"""`run_ingest`: sources → clean/ (series/, rejects.parquet, report.parquet, quality.png).

Incremental: each source file is parsed once into `parts/<key>.parquet` (+ `.rejects.parquet`),
keyed by its content hash, path and the parse settings. A rerun reuses the parts of unchanged
files (hard links) and parses only new or changed ones; assemble.py then cleans only the time
chunks that new, changed or removed files reach and keeps the rest of the last run, so rows are
never duplicated. Same files + same config ⇒ nothing at all.
"""

from __future__ import annotations

import glob
import hashlib
from pathlib import Path, PurePath
from typing import Any

import polars as pl

from tsfm_cli.errors import BadInputError, QualityGateError
from tsfm_cli.ingest.assemble import Part, assemble
from tsfm_cli.ingest.config import PARSE_KEYS, IngestConfig, for_file
from tsfm_cli.ingest.groups import keys_from_path
from tsfm_cli.ingest.reader import read_source, reading_count
from tsfm_cli.ingest.sniff import CHUNK, LineLimit
from tsfm_cli.recipe import config_dict
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
        pieces = [Part(i, f, k, files_meta[f], frame) for i, f, k, frame in parts]
        del parts
        summary = assemble(writer, pieces, files_meta, failed, config, BATCH_READINGS, reporter)
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


BATCH_READINGS = 6_000_000  # readings cleaned at once (a stretch, clean.py): ~0.5 GB of RAM
