"""From the parsed parts to clean/: the series dataset, rejects, report, quality.png, and the
state the next run starts from.

A first run (or one whose settings changed) reads every part and cleans every series. A rerun
reads the parts of new, changed and neighbouring files only, cleans the chunks their readings
reach (increment.py) and keeps the rest of the last run: the outputs are those of a first run
on the same files, byte for byte (tests/test_ingest_nightly.py).

Memory follows a budget of readings (stretches.py), never a series' whole history.
"""

from __future__ import annotations

import fnmatch
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tsfm_cli.errors import BadInputError
from tsfm_cli.ingest.accounting import ingest_summary, line_bitmap, series_units
from tsfm_cli.ingest.clean import clean, margin_points
from tsfm_cli.ingest.config import format_duration
from tsfm_cli.ingest.grid import (
    MAX_GRID_FACTOR,
    MAX_GRID_SLACK,
    grid_step,
    on_lattice,
    series_table,
)
from tsfm_cli.ingest.increment import (
    CHUNKS,
    DUPLICATES,
    PLOT,
    SERIES,
    STATE_FILES,
    UTC,
    chunk_end,
    chunk_readings,
    dirty_chunks,
    facing_zones,
    file_index,
    index_name,
    lowest_times,
    spans_from_index,
    steps_from_lowest,
)
from tsfm_cli.ingest.reader import long_readings
from tsfm_cli.ingest.report import (
    PLOT_BINS,
    PLOT_MAX_SERIES,
    StateBins,
    combine_report,
    plot_runs,
    quality_plot,
    report_parts,
)
from tsfm_cli.ingest.stretches import OPEN, Stretch, plan, plan_chunks
from tsfm_cli.ingest.table import REJECT_SCHEMA
from tsfm_cli.series_dataset import (
    CHUNK_EVERY,
    check_ids,
    chunk_date,
    chunk_runs,
    chunk_us,
    parse_name,
    partition_name,
    resolve,
    write_partition,
)
from tsfm_cli.stagedir import StageWriter, sha256_file
from tsfm_cli.ui import Reporter

REJECT_COLUMNS = ["file", "line", "column", "raw", "reason"]


@dataclass
class Part:
    """One parsed file: its index among the files, path, cache key, manifest entry, and its
    readings when they are still in memory from this run's parse."""

    index: int
    file: str
    key: str
    meta: dict
    frame: pl.DataFrame | None = None


@dataclass
class Runs:
    """A file's series in file order: runs of one series (a wide file's column is one run), each
    numbered by the file's own series number `_lid` (`local`: `_lid` and the key columns)."""

    local: pl.DataFrame
    lids: np.ndarray
    lengths: np.ndarray


@dataclass
class Previous:
    """What the last run left to build on: its directory, manifest and state."""

    dir: Path
    manifest: dict
    outputs: dict
    series: pl.DataFrame  # series_id, step_until, step_us, first_us, last_us
    chunks: pl.DataFrame  # report counts per series_id and _chunk
    duplicates: pl.DataFrame  # series_id, timestamp, file, line, column, raw, reason
    plot: pl.DataFrame  # series_id, _chunk, start_us, length, state
    files: dict = field(default_factory=dict)  # file → its manifest entry


def assemble(
    writer: StageWriter,
    parts: list[Part],
    files_meta: dict[str, dict],
    failed: list[dict],
    config,
    budget: int,
    reporter: Reporter,
) -> dict[str, Any]:
    key_cols: list[str] = []
    files = [""] * (max((p.index for p in parts), default=-1) + 1)
    for p in parts:
        files[p.index] = p.file
        for k in list(p.meta.get("keys", {})) + list(p.meta.get("group_columns", [])):
            if k not in key_cols:
                key_cols.append(k)
    cols = [*key_cols, "sensor"]
    relative = [files_meta[f].get("relative", f) if f else "" for f in files]
    previous, why = _previous(writer, files, relative, key_cols, reporter)
    indexes: dict[int, pl.DataFrame] = {}  # file index → readings per series and day
    if previous is not None:
        indexes = _carry_indexes(writer, previous, parts, reporter)
    runs: dict[int, Runs] = {}
    lows: dict[int, pl.DataFrame] = {}

    def index_files(todo: list[Part]) -> None:
        """First look at files not indexed yet: their series, index and earliest readings."""
        for p in todo:
            runs[p.index], indexes[p.index], low = _index_file(writer, p, cols, config)
            if low is not None:
                lows[p.index] = low

    index_files([p for p in parts if p.index not in indexes])
    new_files = set(runs)
    names, index = _names(indexes, cols, key_cols, files, config)
    steps = changed = grids = kept = None
    if previous is not None:
        steps, changed, grids, why = _changes(
            previous, names, index, new_files, parts, cols, config, writer, runs, lows
        )
        if steps is not None:
            granularity = resolve(config.partition, int(steps["step_us"].min()) // 1_000_000)
            if granularity != previous.manifest.get("summary", {}).get("partition"):
                steps, why = None, f"the partition became {granularity}"
        if steps is None:
            previous = None
            index_files([p for p in parts if p.index not in runs])
    if previous is None:
        steps = _steps(names, lows, runs, cols, config)
    spans = spans_from_index(index, steps, names.height)
    _check_spans(spans, names)
    granularity = resolve(config.partition, int(spans["step_us"].min()) // 1_000_000)
    every = CHUNK_EVERY[granularity]
    chunks = chunk_readings(index, every)
    work = writer.dir / "_work"  # spilled readings, removed before commit
    sizes = np.array(
        [files_meta[f].get("lines_total", 0) + 2 if f in files_meta else 0 for f in files],
        dtype=np.int64,
    )
    cleaning = Cleaning(writer, names, spans, config, key_cols, files, relative, granularity,
                        sizes)  # fmt: skip

    def read(chunks_wanted: pl.DataFrame) -> list[pl.DataFrame | Path]:
        """The readings that cleaning `chunks_wanted` needs, from the files that hold them."""
        margin = cleaning.margin
        windows = _merged(
            chunks_wanted.join(spans.select("_sid", "step_us"), on="_sid").select(
                "_sid",
                lo=pl.col("_chunk") - (margin + 1) * pl.col("step_us"),
                hi=chunk_end("_chunk", every) + (margin + 1) * pl.col("step_us"),
            )
        )
        needed = set(
            index.join(windows, on="_sid")
            .filter((pl.col("first") <= pl.col("hi")) & (pl.col("last") >= pl.col("lo")))
            .get_column("_file")
            .to_list()
        )
        todo = [p for p in parts if p.index in needed]
        held = sum(p.meta.get("readings", 0) for p in todo) <= budget
        return [
            _hold(
                _tag_some(writer, p, cols, config, names, windows, runs.get(p.index)),
                None if held else work,
                p.index,
            )
            for p in todo
        ]

    try:
        if previous is None:  # every file, every series
            held = sum(p.meta.get("readings", 0) for p in parts) <= budget
            sources: list[pl.DataFrame | Path] = []
            for p in parts:
                sid_of = _sids_of(runs[p.index].local, names, cols)
                tagged = _tag(_long(writer, p, config, last=True), runs[p.index], sid_of, p.index)
                sources.append(_hold(tagged, None if held else work, p.index))
            cleaning.run(plan(spans, chunks, budget), sources)
        else:  # the chunks changed readings reach, and the readings those reach
            kept = _clean_changes(
                writer, previous, cleaning, names, spans, chunks, changed, grids, config,
                budget, read, reporter,
            )  # fmt: skip
    finally:
        for p in parts:
            p.frame = None  # this run's parse is let go of once read
    shutil.rmtree(work, ignore_errors=True)
    return _finish(
        writer, cleaning, parts, files, files_meta, failed, config, key_cols, names, index,
        spans, steps, previous, kept, new_files, why,
    )  # fmt: skip


def _clean_changes(
    writer, previous, cleaning, names, spans, chunks, changed, grids, config, budget, read,
    reporter,
) -> pl.DataFrame:  # fmt: skip
    """Clean the core around the changes, then the ring chunks whose neighbouring core points
    moved; keep everything else. The partitions kept (`_sid`, `_chunk`, `name`, `series_id`)."""
    every = cleaning.every
    margin = cleaning.margin
    core, ring = dirty_chunks(changed, grids, margin, every)
    reach = spans.select("_sid", reach_us=(margin + 1) * pl.col("step_us"))
    # a margin of a day or more reaches past the neighbouring chunk: its ring is cleaned too
    far = reach.filter(pl.col("reach_us") >= DAY_US)
    core = pl.concat([core, ring.join(far, on="_sid", how="semi")])
    ring = ring.join(far, on="_sid", how="anti")
    others = pl.concat([core, ring])
    kept, damaged = _keep(writer, previous, names, others, reporter, keep_all_but=True)
    first = pl.concat([core, damaged]).unique().sort("_sid", "_chunk")
    zones = facing_zones(ring, core, reach, every)
    cleaning.run(plan_chunks(first, chunks, every, budget), read(first), zones)
    moved = _moved_zones(previous, names, zones, cleaning.zones)
    calm = ring.join(moved, on=["_sid", "_chunk"], how="anti")
    kept_ring, damaged = _keep(writer, previous, names, calm, reporter)
    second = pl.concat([ring.join(kept_ring, on=["_sid", "_chunk"], how="anti")]).sort(
        "_sid", "_chunk"
    )
    if second.height:
        cleaning.run(plan_chunks(second, chunks, every, budget), read(second))
    return pl.concat([kept, kept_ring]).sort("_sid", "_chunk")


DAY_US = 86_400_000_000


def _moved_zones(previous, names, zones: pl.DataFrame, found: list[pl.DataFrame]) -> pl.DataFrame:
    """The ring chunks (`_sid`, `_chunk`) whose facing core points differ from the last run's
    (read from its partition of that core chunk, sha256 verified; a missing or damaged one
    differs)."""
    if zones.height == 0:
        return pl.DataFrame(schema={"_sid": pl.UInt32, "_chunk": pl.Int64})
    new = pl.concat(found) if found else pl.DataFrame(schema=dict.fromkeys(ZONE_COLUMNS))
    new = new.with_columns(pl.col("timestamp").dt.epoch("us").alias("_t"))
    ids = names["series_id"]
    moved = []
    for sid, ring, core, lo, hi in zones.select("_sid", "_ring", "_core", "lo", "hi").iter_rows():
        name = partition_name(ids[sid], chunk_date(core))
        path = previous.dir / name
        mine = new.filter((pl.col("_sid") == sid) & pl.col("_t").is_between(lo, hi))
        same = False
        recorded = previous.outputs.get(name, {}).get("sha256")
        if recorded and path.is_file() and sha256_file(path) == recorded:
            old = pl.read_parquet(path, columns=ZONE_COLUMNS[1:]).filter(
                pl.col("timestamp").dt.epoch("us").is_between(lo, hi)
            )
            same = old.equals(mine.select(ZONE_COLUMNS[1:]).cast(old.schema))
        if not same:
            moved.append((sid, ring))
    return pl.DataFrame(moved, schema={"_sid": pl.UInt32, "_chunk": pl.Int64}, orient="row")


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
    parts = [fnmatch.translate(p).replace(r"\Z", "$") for p in patterns]
    return "(?i)^(?:" + "|".join(parts) + ")"


_DAY_COLS = ["_day", "readings", "first", "last"]


def _with_cols(frame: pl.DataFrame, cols: list[str]) -> pl.DataFrame:
    """`frame` with every column of `cols` (missing ones null), as strings."""
    return frame.with_columns(
        pl.col(c).cast(pl.String) if c in frame.columns else pl.lit(None, pl.String).alias(c)
        for c in cols
    )


def _names(indexes, cols, key_cols, files, config) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(the series of all files, numbered: `series_table`; every file's index rows with `_file`
    and `_sid`)."""
    every = [
        _with_cols(ix.select(c for c in cols if c in ix.columns), cols) for ix in indexes.values()
    ]
    names = series_table(pl.concat(every).lazy(), key_cols) if every else None
    if names is None or names.height == 0:
        used = [f for f in files if f]
        where = used[0] + (f" (and {len(used) - 1} more files)" if len(used) > 1 else "")
        excluded = (
            f" after exclude_sensors {config.exclude_sensors}" if config.exclude_sensors else ""
        )
        raise BadInputError(f"no sensor readings left in any file{excluded}: {where}")
    check_ids(names["series_id"])  # each is a folder name of the series dataset
    lookup = names.select("_sid", *cols)
    rows = []
    for i, ix in sorted(indexes.items()):
        sid = _with_cols(ix, cols).join(lookup, on=cols, how="left", nulls_equal=True)
        rows.append(sid.select(pl.lit(i, pl.Int32).alias("_file"), "_sid", *_DAY_COLS))
    return names, pl.concat(rows)


def _long(writer: StageWriter, part: Part, config, last: bool = False) -> pl.LazyFrame:
    """A part's readings one row per cell, excluded sensors left out."""
    lazy = (
        pl.scan_parquet(writer.dir / f"parts/{part.key}.parquet")
        if part.frame is None
        else part.frame.lazy()
    )
    if last:  # a file parsed in this run is held until its last read
        part.frame = None
    lazy = long_readings(lazy, part.meta["keys"], part.meta.get("group_columns", []))
    if config.exclude_sensors:
        sensor = pl.col("sensor").cast(pl.String)
        lazy = lazy.filter(~sensor.str.contains(sensor_globs(config.exclude_sensors)))
    return lazy


def _runs(lazy: pl.LazyFrame, cols: list[str]) -> Runs:
    present = [c for c in cols if c in lazy.collect_schema()]
    run = _with_cols(_series_runs(lazy, present), cols).select("_len", *cols)
    local = (
        run.select(cols)
        .unique(maintain_order=True)
        .with_row_index("_lid")
        .with_columns(pl.col("_lid").cast(pl.UInt32))
    )
    lid = run.join(local, on=cols, how="left", nulls_equal=True, maintain_order="left")
    return Runs(local, lid["_lid"].to_numpy(), lid["_len"].to_numpy())


def _index_file(writer, part: Part, cols, config):
    """(a file's Runs, its index, written to parts/; without `freq`, its series' earliest
    readings): its timestamps are read, not its values."""
    lazy = _long(writer, part, config)
    runs = _runs(lazy, cols)
    times = _timed(lazy, runs)
    index = file_index(times, runs.local)
    name = index_name(part.key)
    (writer.dir / name).unlink(missing_ok=True)  # never write through a link to the last run
    writer.write_parquet(name, index)
    low = None if config.freq else lowest_times(times)
    return runs, index, low


def _timed(lazy: pl.LazyFrame, runs: Runs) -> pl.LazyFrame:
    """A file's reading times with its own series numbers (`_lid`); no values read."""
    lids = pl.Series(np.repeat(runs.lids, runs.lengths), dtype=pl.UInt32)
    return lazy.select("timestamp").collect().with_columns(_lid=lids).lazy()


def _tag(lazy: pl.LazyFrame, runs: Runs, sid_of: np.ndarray, index: int) -> pl.DataFrame:
    """A file's readings with their series (`_sid`) and file (`_file`)."""
    return (
        lazy.select("raw_line", "timestamp", "value", "flags")
        .collect()
        .with_columns(
            _sid=pl.Series(np.repeat(sid_of[runs.lids], runs.lengths), dtype=pl.UInt32),
            _file=pl.lit(index, pl.Int32),
        )
        .select("_sid", "_file", "raw_line", "timestamp", "value", "flags")
    )


def _tag_some(writer, part, cols, config, names, windows, runs: Runs | None) -> pl.DataFrame:
    """The readings of a part that `windows` (`_sid`, `lo`, `hi` µs; disjoint per series) reach."""
    lazy = _long(writer, part, config, last=True)
    runs = runs or _runs(lazy, cols)
    at = pl.col("timestamp").dt.epoch("us")
    return (
        _tag(lazy, runs, _sids_of(runs.local, names, cols), part.index)
        .join(windows, on="_sid", maintain_order="left")
        .filter(at.is_between(pl.col("lo"), pl.col("hi")))
        .drop("lo", "hi")
    )


def _hold(tagged: pl.DataFrame, spill: Path | None, index: int) -> pl.DataFrame | Path:
    """Tagged readings kept in memory, or spilled to `_work/` (over the budget) and scanned back
    a stretch at a time."""
    if spill is None:
        return tagged
    spill.mkdir(exist_ok=True)
    path = spill / f"readings_{index}.parquet"
    tagged.write_parquet(path, compression="lz4")
    return path


def _merged(windows: pl.DataFrame) -> pl.DataFrame:
    """Overlapping time windows of a series merged into one."""
    ordered = windows.sort("_sid", "lo")
    fresh = pl.col("lo") > pl.col("hi").cum_max().shift(1).over("_sid")
    return (
        ordered.with_columns(_run=fresh.fill_null(True).cum_sum())
        .group_by("_sid", "_run")
        .agg(pl.col("lo").min(), pl.col("hi").max())
        .drop("_run")
    )


def _sids_of(local: pl.DataFrame, names: pl.DataFrame, cols: list[str]) -> np.ndarray:
    """A file's series numbers (`_lid`, 0..k-1) → the dataset's (`_sid`)."""
    joined = local.join(
        names.select("_sid", *cols), on=cols, how="left", nulls_equal=True, maintain_order="left"
    )
    return joined["_sid"].to_numpy()


def _lows_by_sid(lows: dict[int, pl.DataFrame], runs: dict[int, Runs], names, cols) -> pl.DataFrame:
    tagged = []
    for i, low in lows.items():
        sid_of = _sids_of(runs[i].local, names, cols)
        tagged.append(low.select(_sid=pl.Series(sid_of).gather(low["_lid"]), _low="_low"))
    return pl.concat(tagged)


def _steps(names, lows, runs, cols, config) -> pl.DataFrame:
    """Every series' step (a full build): `freq`, or from the earliest readings of all files."""
    if config.freq:
        step = grid_step(pl.lit(0), config)
        return names.select("_sid", step_us=step, step_until=pl.lit(None, pl.Int64))
    return steps_from_lowest(_lows_by_sid(lows, runs, names, cols), config)


def _carry_indexes(writer, previous: Previous, parts: list[Part], reporter) -> dict:
    """The last run's indexes of files unchanged since (hard links, sha256 verified)."""
    indexes = {}
    for p in parts:
        old = previous.files.get(p.file)
        name = index_name(p.key)
        if not (old and old.get("part") == p.key and name in previous.outputs):
            continue
        writer.carry_over(name, previous.dir)
        writer.register(name)
        if writer.outputs[name]["sha256"] == previous.outputs[name]["sha256"]:
            indexes[p.index] = pl.read_parquet(writer.dir / name)
        else:
            reporter.warn(f"{previous.dir / name}: damaged (sha256 differs); read again")
            writer.outputs.pop(name)
            (writer.dir / name).unlink()
    return indexes


def _previous(writer, files, relative, key_cols, reporter):
    """(the last run's state, None), or (None, why every series is cleaned)."""
    manifest = writer.previous_manifest()
    if not manifest or manifest.get("stage") != "ingest":
        return None, "a first run"
    if manifest.get("config") != writer.config:
        return None, "the settings changed"
    if manifest.get("summary", {}).get("key_columns") != key_cols:
        return None, "the files' key columns changed"
    used = [r for r in relative if r]
    if len(set(used)) != len(used):
        return None, "two files have the same relative path"
    outputs = manifest.get("outputs", {})
    state = {}
    for name in STATE_FILES:
        path = writer.out_dir / name
        if name not in outputs or not path.is_file():
            return None, "the last run left no state"
        if sha256_file(path) != outputs[name]["sha256"]:
            reporter.warn(f"{path}: damaged (sha256 differs); every series is cleaned again")
            return None, f"{name} is damaged"
        state[name] = pl.read_parquet(path)
    for old in (manifest.get("files") or {}).values():
        if index_name(old.get("part", "")) not in outputs:
            return None, "the last run left no index of its files"
    previous = Previous(
        writer.out_dir,
        manifest,
        outputs,
        state[SERIES],
        state[CHUNKS],
        state[DUPLICATES],
        state[PLOT],
        manifest.get("files") or {},
    )
    return previous, None


def _changes(previous, names, index, new_files, parts, cols, config, writer, runs, lows):
    """(steps, changed grid time, each series' old and new grid span, what changed) for a
    rerun, or (None, None, None, why) when every series must be cleaned again."""
    current = {(p.file, p.key) for p in parts}
    removed = [
        old["part"]
        for file, old in previous.files.items()
        if (file, old.get("part")) not in current
    ]
    lookup = names.select("_sid", *cols)
    rows = [index.filter(pl.col("_file").is_in(sorted(new_files))).select("_sid", *_DAY_COLS)]
    for key in removed:
        name = index_name(key)
        path = previous.dir / name
        if not path.is_file() or sha256_file(path) != previous.outputs[name]["sha256"]:
            return None, None, None, f"the index of a removed file is damaged: {path}"
        old = _with_cols(pl.read_parquet(path), cols).join(
            lookup, on=cols, how="inner", nulls_equal=True
        )
        rows.append(old.select("_sid", *_DAY_COLS))
    touched = pl.concat(rows).filter(pl.col("_sid").is_not_null())
    old = names.select("_sid", "series_id").join(
        previous.series, on="series_id", how="left", maintain_order="left"
    )
    if config.freq:
        steps = _steps(names, lows, runs, cols, config)
    else:  # a new series, or a reading before the STEP_READINGS-th one, may move a step
        early = touched.join(old.select("_sid", "step_until"), on="_sid").filter(
            pl.col("step_until").is_null() | (pl.col("first") <= pl.col("step_until"))
        )
        candidates = pl.concat(
            [old.filter(pl.col("step_us").is_null())["_sid"], early["_sid"]]
        ).unique()
        steps = old.select("_sid", "step_us", "step_until")
        if len(candidates):
            fresh = _candidate_steps(candidates, index, new_files, parts, cols, config, writer,
                                     runs, lows, names)  # fmt: skip
            steps = steps.update(fresh, on="_sid", include_nulls=True)
    per = index.group_by("_sid").agg(first=pl.col("first").min(), last=pl.col("last").max())
    now = (
        steps.join(per, on="_sid", how="left")
        .with_columns(first_us=on_lattice("first"), last_us=on_lattice("last"))
        .join(
            old.select(
                "_sid",
                old_step=pl.col("step_us"),
                old_first=pl.col("first_us"),
                old_last=pl.col("last_us"),
            ),
            on="_sid",
        )
    )
    moved_step = pl.col("old_step").is_null() | (pl.col("old_step") != pl.col("step_us"))
    changed = pl.concat(
        [
            # where changed readings land on the grid (rounding is monotonic)
            touched.join(now.select("_sid", "step_us"), on="_sid").select(
                "_sid", lo=on_lattice("first"), hi=on_lattice("last")
            ),
            # a grid that starts or ends elsewhere; a new series or a moved step: all of it
            now.filter(pl.col("old_first") != pl.col("first_us")).select(
                "_sid",
                lo=pl.min_horizontal("old_first", "first_us"),
                hi=pl.max_horizontal("old_first", "first_us"),
            ),
            now.filter(pl.col("old_last") != pl.col("last_us")).select(
                "_sid",
                lo=pl.min_horizontal("old_last", "last_us"),
                hi=pl.max_horizontal("old_last", "last_us"),
            ),
            now.filter(moved_step).select("_sid", lo="first_us", hi="last_us"),
        ],
        how="vertical_relaxed",
    ).filter(pl.col("lo").is_not_null())
    grids = now.select(
        "_sid",
        "step_us",
        lo_us=pl.min_horizontal("old_first", "first_us"),
        hi_us=pl.max_horizontal("old_last", "last_us"),
    )
    what = f"files new or changed: {len(new_files)}, gone or replaced: {len(removed)}"
    return steps.select("_sid", "step_us", "step_until"), changed, grids, what


def _candidate_steps(sids, index, new_files, parts, cols, config, writer, runs, lows, names):
    """The steps of the series `sids` from the earliest readings of every file holding them."""
    holding = set(index.filter(pl.col("_sid").is_in(sids.implode()))["_file"].to_list())
    for p in parts:
        if p.index in holding and p.index not in lows:
            lazy = _long(writer, p, config)
            runs[p.index] = _runs(lazy, cols)
            lows[p.index] = lowest_times(_timed(lazy, runs[p.index]))
    found = _lows_by_sid({i: lows[i] for i in holding if i in lows}, runs, names, cols)
    return steps_from_lowest(found.filter(pl.col("_sid").is_in(sids.implode())), config)


def _keep(writer, previous: Previous, names, chunks, reporter, keep_all_but: bool = False):
    """Carry the last run's partitions of `chunks` (with `keep_all_but`: of all other chunks)
    over (hard links, sha256 verified): ((_sid, _chunk, name, series_id) of those kept,
    (_sid, _chunk) of damaged ones, to be cleaned again)."""
    listed = [(n, parse_name(n)) for n in previous.outputs]
    rows = [(n, key[0], chunk_us(key[1])) for n, key in listed if key is not None]
    frame = pl.DataFrame(
        rows, schema={"name": pl.String, "series_id": pl.String, "_chunk": pl.Int64}, orient="row"
    )
    frame = frame.join(names.select("_sid", "series_id"), on="series_id", how="inner")
    how = "anti" if keep_all_but else "semi"
    frame = frame.join(chunks, on=["_sid", "_chunk"], how=how).sort("_sid", "_chunk")
    damaged = []
    for name, sid, chunk in frame.select("name", "_sid", "_chunk").iter_rows():
        writer.carry_over(name, previous.dir)
        writer.register(name, rows=previous.outputs[name].get("rows"))
        if writer.outputs[name]["sha256"] != previous.outputs[name]["sha256"]:
            reporter.warn(f"{previous.dir / name}: damaged (sha256 differs); cleaned again")
            writer.outputs.pop(name)
            (writer.dir / name).unlink()
            damaged.append((sid, chunk))
    bad = pl.DataFrame(damaged, schema={"_sid": pl.UInt32, "_chunk": pl.Int64}, orient="row")
    return frame.join(bad, on=["_sid", "_chunk"], how="anti"), bad


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


class Cleaning:
    """Cleans stretches and adds up what the outputs need from each: the partition files
    (written as they come), report counts per chunk, duplicate rejects, the lines used and
    quality.png's states (as runs). A stretch's grid is let go of before the next."""

    def __init__(self, writer, names, spans, config, key_cols, files, relative, granularity,
                 sizes):  # fmt: skip
        self.writer, self.names, self.spans, self.config = writer, names, spans, config
        self.key_cols, self.files, self.relative = key_cols, files, relative
        self.granularity, self.every = granularity, CHUNK_EVERY[granularity]
        self.margin = margin_points(config, names)  # grid points a chunk's cleaning looks past it
        self.reach = (self.margin + 1) * spans["step_us"].fill_null(0).to_numpy()
        self.used = np.zeros(int(sizes.sum()), dtype=bool)
        self.sizes = sizes
        self.report_rows: list[pl.DataFrame] = []
        self.dup_rejects: list[pl.DataFrame] = []
        self.plot_runs: list[pl.DataFrame] = []
        self.zones: list[pl.DataFrame] = []
        self.written = self.cleaned = self.files_read = 0

    def run(self, stretches: list[Stretch], sources: list, zones: pl.DataFrame | None = None):
        """Clean `stretches` from the readings in `sources` (let go of after the last); the rows
        of the grid inside `zones` (`_sid`, `lo`, `hi` µs, inclusive) are kept in `self.zones`."""
        self.files_read += len(sources)
        scans = [pl.scan_parquet(s) if isinstance(s, Path) else s.lazy() for s in sources]
        sources.clear()
        names, spans, every = self.names, self.spans, self.every
        for number, stretch in enumerate(stretches):
            sids = np.array(stretch.sids, dtype=np.uint32)
            own = names[sids].with_columns(_sid=pl.int_range(len(sids), dtype=pl.UInt32))
            readings = self._readings(scans, stretch)
            if number == len(stretches) - 1:
                scans.clear()  # let go of the held readings
            span = None
            if not stretch.whole:
                bounds = np.array(stretch.bounds, dtype=np.int64)
                span = spans[sids].with_columns(
                    _sid=pl.int_range(len(sids), dtype=pl.UInt32),
                    lo_us=pl.Series(bounds[:, 0]),
                    hi_us=pl.Series(bounds[:, 1]),
                )
            grid, dups = clean(readings, own, self.config, chunk_every=every, span=span)
            del readings
            grid = grid.with_columns(pl.lit(pl.Series(sids)).gather(pl.col("_sid")).alias("_sid"))
            parts = report_parts(grid, by_chunk=True)
            self.report_rows.append(parts)
            self.cleaned += parts.height
            self.plot_runs.append(plot_runs(grid.filter(pl.col("_sid") < PLOT_MAX_SERIES)))
            self.dup_rejects.append(
                _named_duplicates(
                    dups.with_columns(pl.lit(pl.Series(sids)).gather(pl.col("_sid")).alias("_sid")),
                    names,
                    self.files,
                )
            )
            if zones is not None and zones.height:
                at = pl.col("timestamp").dt.epoch("us")
                self.zones.append(
                    grid.join(zones, on="_sid")
                    .filter(at.is_between(pl.col("lo"), pl.col("hi")))
                    .select(ZONE_COLUMNS)
                )
            self.used |= line_bitmap(
                grid["_file"].fill_null(-1).to_numpy(),
                grid["raw_line"].fill_null(-1).to_numpy(),
                self.sizes,
            )
            self.written += _write_series(
                self.writer, grid, names, self.relative, self.key_cols, self.granularity
            )
            del grid

    def _readings(self, scans, stretch: Stretch) -> pl.DataFrame:
        """The readings a stretch and its margins need, `_sid` counted from 0 in the stretch."""
        n_series, reach = self.names.height, self.reach
        sids = np.array(stretch.sids, dtype=np.int64)
        lo = np.full(n_series, OPEN, dtype=np.int64)
        hi = np.full(n_series, -OPEN, dtype=np.int64)
        if stretch.whole:
            lo[sids], hi[sids] = -OPEN, OPEN
        else:
            bounds = np.array(stretch.bounds, dtype=np.int64)
            lo[sids], hi[sids] = bounds[:, 0] - reach[sids], bounds[:, 1] + reach[sids]
        at = pl.col("timestamp").dt.epoch("us")
        sid = pl.col("_sid")
        # the ranges of series and time first, as plain bounds: spilled files and row groups
        # outside them are skipped by their statistics, unread
        wanted = sid.is_between(int(sids.min()), int(sids.max()))
        if not stretch.whole:
            since = pl.lit(int(lo[sids].min())).cast(UTC)
            until = pl.lit(int(hi[sids].max())).cast(UTC)
            wanted &= pl.col("timestamp").is_between(since, until)
        wanted &= at.is_between(
            pl.lit(pl.Series(lo)).gather(sid), pl.lit(pl.Series(hi)).gather(sid)
        )
        # one file at a time: a stretch costs its readings and one file's decoding, not the
        # decoding of every file at once
        pieces = [
            scan.filter(wanted)
            .select(
                pl.lit(_local_of(sids, n_series)).gather(sid).alias("_sid"),
                "_file",
                "raw_line",
                "timestamp",
                "value",
                "flags",
            )  # fmt: skip
            .collect()
            for scan in scans
        ]
        return pl.concat(pieces, rechunk=True)


ZONE_COLUMNS = ["_sid", "timestamp", "value", "flags", "observed"]
_NO_RUNS = pl.DataFrame(
    schema={
        "_sid": pl.UInt32,
        "_chunk": pl.Int64,
        "start_us": pl.Int64,
        "length": pl.Int64,
        "state": pl.Int8,
    }
)


def _local_of(sids: np.ndarray, n_series: int) -> pl.Series:
    """Series number in the dataset → its number in a stretch of series `sids`."""
    local = np.zeros(n_series, dtype=np.uint32)
    local[sids] = np.arange(len(sids), dtype=np.uint32)
    return pl.Series(local)


def _finish(
    writer, cleaning: Cleaning, parts, files, files_meta, failed, config, key_cols, names,
    index, spans, steps, previous, kept, new_files, why,
) -> dict[str, Any]:  # fmt: skip
    """The report, rejects, quality.png, summary and state from what cleaning added up and
    what was kept from the last run."""
    every = cleaning.every
    index_of = {f: i for i, f in enumerate(files) if f}
    report_rows, dup_rejects = list(cleaning.report_rows), list(cleaning.dup_rejects)
    plot = list(cleaning.plot_runs)
    if kept is not None and kept.height:  # the last run's counts, duplicates, plot of kept chunks
        report_rows.append(_kept_parts(previous, names, kept, index_of))
        dup_rejects.append(_kept_duplicates(previous, names, kept, every))
        plot.append(
            _kept_runs(writer, previous, names, kept.filter(pl.col("_sid") < PLOT_MAX_SERIES))
        )
    runs = pl.concat([_NO_RUNS, *plot], how="diagonal_relaxed").sort("_sid", "start_us")
    units = series_units(files_meta)
    report = combine_report(report_rows, names, key_cols, files, units)
    # quality.png is drawn (holding the GIL) while the report, the rejects and the state are
    # written and hashed (polars and hashlib release it); not earlier, so that the drawing's
    # memory never adds to a stretch being cleaned. Leaving the block waits for the drawing,
    # on errors too, so that nothing writes into the directory once it is discarded.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tsfm-plot") as pool:
        colours = _plot_colours(runs, spans, names.height)
        drawing = pool.submit(quality_plot, colours, report, writer.dir / "quality.png")
        duplicates = _ordered_duplicates(dup_rejects, names)
        all_rejects = _write_rejects(writer, parts, duplicates, failed)
        writer.write_parquet("report.parquet", report.drop("_sid"))
        used, carried = cleaning.used, set()
        if previous is not None:
            cleaned = pl.concat(
                [pl.DataFrame(schema={"_sid": pl.UInt32, "_chunk": pl.Int64})]
                + [r.select("_sid", "_chunk") for r in cleaning.report_rows]
            )
            affected = _affected(index, cleaned, spans, every, new_files)
            # a file parsed again (its cached part was damaged) has no accounting to keep
            affected |= {i for i, f in enumerate(files) if f and "lines_used" not in files_meta[f]}
            used = used | _kept_lines(
                writer, kept, index, affected, cleaning.relative, cleaning.sizes, spans, every
            )
            carried = {f for i, f in enumerate(files) if f and i not in affected}
        summary = ingest_summary(
            (used, cleaning.sizes, int(report["points"].sum()), int(report["observed"].sum())),
            all_rejects, report, files, files_meta, failed, config.gate_on, carried,
        )  # fmt: skip
        _write_state(writer, report_rows, duplicates, runs, names, spans, steps, files)
        n_kept = kept.height if kept is not None else 0
        summary.update(
            partition=cleaning.granularity,
            partitions=cleaning.written + n_kept,
            key_columns=key_cols,
            increment={
                "mode": "incremental" if previous is not None else "full",
                "why": why,
                "chunks_cleaned": cleaning.cleaned,
                "chunks_kept": n_kept,
                "files_read": cleaning.files_read,
            },
        )
        drawing.result()  # the drawing's error, if any, is the stage's error
    writer.register("quality.png")
    return summary


def _plot_colours(runs: pl.DataFrame, spans: pl.DataFrame, n_series: int):
    """quality.png's colours of the first PLOT_MAX_SERIES series, from their states' runs."""
    shown = min(n_series, PLOT_MAX_SERIES)
    if not shown:
        return None
    first, step = spans["first_us"].to_numpy(), spans["step_us"].to_numpy()
    points = spans["points"].fill_null(0).to_numpy()
    rows = []
    by_sid = runs.partition_by("_sid", as_dict=True) if runs.height else {}
    for sid in range(shown):
        bins = StateBins(int(points[sid]), PLOT_BINS)
        mine = by_sid.get((sid,))
        if mine is not None:
            offsets = (mine["start_us"].to_numpy() - first[sid]) // step[sid]
            bins.add_runs(offsets, mine["length"].to_numpy(), mine["state"].to_numpy())
        rows.append(bins.colours())
    return np.stack(rows)


def _named_duplicates(dups: pl.DataFrame, names: pl.DataFrame, files: list[str]) -> pl.DataFrame:
    """Duplicate rejects with their series and file by name (as kept in parts/duplicates)."""
    file_names = pl.Series("file", files, dtype=pl.String)
    return dups.select(
        pl.lit(names["series_id"]).gather(pl.col("_sid")).alias("series_id"),
        "timestamp",
        pl.lit(file_names).gather(pl.col("_file")).alias("file"),
        *REJECT_COLUMNS[1:],
    )


def _ordered_duplicates(frames: list[pl.DataFrame], names: pl.DataFrame) -> pl.DataFrame:
    """All duplicate rejects in the order a full build gives: series, then grid point (a point's
    own rejects keep their order, all from one chunk)."""
    frame = pl.concat(frames)
    order = names.select("series_id", "_sid")
    return (
        frame.join(order, on="series_id", how="left", maintain_order="left")
        .sort("_sid", "timestamp", maintain_order=True)
        .drop("_sid")
    )


def _kept_parts(previous: Previous, names, kept, index_of) -> pl.DataFrame:
    """The report counts of the kept chunks, with this run's series and file numbers."""
    rows = previous.chunks.join(names.select("_sid", "series_id"), on="series_id").join(
        kept.select("_sid", "_chunk"), on=["_sid", "_chunk"], how="semi"
    )
    number = pl.element().replace_strict(index_of, default=None, return_dtype=pl.Int32)
    return rows.with_columns(pl.col("_files").list.eval(number)).drop("series_id")


def _kept_duplicates(previous: Previous, names, kept, every) -> pl.DataFrame:
    frame = previous.duplicates.join(names.select("_sid", "series_id"), on="series_id")
    frame = frame.with_columns(_chunk=pl.col("timestamp").dt.truncate(every).dt.epoch("us"))
    frame = frame.join(kept.select("_sid", "_chunk"), on=["_sid", "_chunk"], how="semi")
    return frame.drop("_sid", "_chunk")


def _kept_runs(writer, previous: Previous, names, kept: pl.DataFrame) -> pl.DataFrame:
    """The plot runs of kept chunks (of the series quality.png shows): from the last run's
    state, or read from the partition for a series the last run did not show."""
    plotted = previous.series["series_id"].head(PLOT_MAX_SERIES).to_list()
    stored = kept.filter(pl.col("series_id").is_in(plotted))
    where = stored.select("series_id", "_chunk", "_sid")
    runs = [previous.plot.join(where, on=["series_id", "_chunk"]).drop("series_id")]
    unstored = kept.join(stored, on=["_sid", "_chunk"], how="anti")
    for name, sid, chunk in unstored.select("name", "_sid", "_chunk").iter_rows():
        frame = pl.read_parquet(writer.dir / name, columns=["timestamp", "observed", "flags"])
        frame = frame.with_columns(_sid=pl.lit(sid, pl.UInt32), _chunk=pl.lit(chunk).cast(UTC))
        runs.append(plot_runs(frame))
    return pl.concat(runs, how="diagonal_relaxed")


def _landing(index: pl.DataFrame, spans: pl.DataFrame) -> pl.DataFrame:
    """Index rows with the grid points their first and last readings land on (`lo`, `hi` µs;
    rounding is monotonic, so every reading of the row lands between them)."""
    return index.join(spans.select("_sid", "step_us"), on="_sid").with_columns(
        lo=on_lattice("first"), hi=on_lattice("last")
    )


def _affected(index, cleaned: pl.DataFrame, spans, every, new_files) -> set[int]:
    """Files with readings in a chunk cleaned now (`cleaned`: `_sid`, `_chunk`): their line
    accounting is counted again (from the new grid and the kept partitions); the others keep
    the last run's."""
    hits = (
        _landing(index, spans)
        .join(cleaned.with_columns(_end=chunk_end("_chunk", every)), on="_sid")
        .filter((pl.col("lo") < pl.col("_end")) & (pl.col("hi") >= pl.col("_chunk")))
    )
    return set(hits["_file"].unique().to_list()) | set(new_files)


def _kept_lines(writer, kept, index, affected, relative, sizes, spans, every) -> np.ndarray:
    """The lines of affected files that kept partitions hold, as a `_line_bitmap`."""
    bits = np.zeros(int(sizes.sum()), dtype=bool)
    if kept is None or kept.height == 0 or not affected:
        return bits
    rows = _landing(index.filter(pl.col("_file").is_in(list(affected))), spans)
    hits = (
        rows.join(kept.with_columns(_end=chunk_end("_chunk", every)), on="_sid")
        .filter((pl.col("lo") < pl.col("_end")) & (pl.col("hi") >= pl.col("_chunk")))
        .group_by("name")
        .agg(pl.col("_file").unique())
    )
    for name, wanted in hits.iter_rows():
        frame = pl.read_parquet(writer.dir / name, columns=["source", "raw_line"])
        lookup = {relative[i]: i for i in wanted}
        frame = frame.filter(
            pl.col("source").is_in(list(lookup)) & pl.col("raw_line").is_not_null()
        )
        file_index = frame["source"].replace_strict(lookup, return_dtype=pl.Int64).to_numpy()
        bits |= line_bitmap(file_index, frame["raw_line"].to_numpy(), sizes)
    return bits


def _write_state(writer, report_rows, duplicates, runs, names, spans, steps, files) -> None:
    """parts/chunks, parts/duplicates, parts/plot and parts/series: what the next run keeps."""
    name = pl.element().replace_strict(dict(enumerate(files)), return_dtype=pl.String)
    chunks = pl.concat(report_rows, how="diagonal_relaxed").sort("_sid", "_chunk")
    chunks = chunks.with_columns(pl.col("_files").list.drop_nulls().list.eval(name).list.sort())
    chunks = chunks.join(names.select("_sid", "series_id"), on="_sid", maintain_order="left")
    writer.write_parquet(CHUNKS, chunks.drop("_sid"))
    writer.write_parquet(DUPLICATES, duplicates)
    series = (
        names.select("_sid", "series_id")
        .join(steps.select("_sid", "step_until"), on="_sid", how="left", maintain_order="left")
        .join(spans.select("_sid", "step_us", "first_us", "last_us"), on="_sid", how="left")
        .sort("_sid")
        .drop("_sid")
    )
    writer.write_parquet(SERIES, series)
    ids = names.select("_sid", "series_id")
    plot = runs.join(ids, on="_sid", maintain_order="left").select(
        "series_id", "_chunk", "start_us", "length", "state"
    )
    writer.write_parquet(PLOT, plot)


def _write_series(writer: StageWriter, grid, names, files, key_cols, granularity: str) -> int:
    """A stretch's grid (sorted by series then time) as its partition files, each registered
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


def _write_rejects(writer: StageWriter, parts, duplicates, failed) -> pl.DataFrame:
    """rejects.parquet: the parse rejects of every file, duplicate readings, files not read."""
    rejects = [pl.scan_parquet(writer.dir / f"parts/{p.key}.rejects.parquet") for p in parts]
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
    dup_rows = duplicates.select(REJECT_COLUMNS).cast(REJECT_SCHEMA)
    all_rejects = pl.concat([*[r.collect() for r in rejects], dup_rows, failed_rows])
    writer.write_parquet("rejects.parquet", all_rejects)
    return all_rejects
