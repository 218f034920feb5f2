"""`ood-split --shard i/n`: each shard cuts the windows of a share of the series; a final run
without `--shard` merges the shards' windows into the same rows as one unsharded run.

A series belongs to shard crc32(series_id) mod n (stable across runs and machines). A shard
writes `OUT-shard-i-of-n/windows.parquet`: its windows before window ids are given (ids, the
synthetic drift, the scenario measures and train.parquet need every series and are the merge's
work, which holds windows only, never the series).
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import numpy as np
import polars as pl

from tsfm_cli.errors import BadInputError
from tsfm_cli.ood.windows import Block
from tsfm_cli.stagedir import shard_dir

PARTS = ("natural", "val", "reference")
WINDOWS = "windows.parquet"


def shard_series(series_ids: list[str], index: int, count: int) -> list[int]:
    """Indices (in file order) of the series that shard `index` of `count` cuts."""
    return [i for i, s in enumerate(series_ids) if zlib.crc32(s.encode()) % count == index]


def find_shards(out_dir: Path) -> list[Path]:
    """The shard folders of `out_dir` (`OUT-shard-i-of-n`), all of one n, 0..n-1 complete;
    [] when there are none. A partial set is bad input (a shard has not run yet)."""
    pattern = re.compile(re.escape(out_dir.name) + r"-shard-(\d+)-of-(\d+)")
    found: dict[int, dict[int, Path]] = {}
    for path in out_dir.parent.glob(f"{out_dir.name}-shard-*-of-*"):
        match = pattern.fullmatch(path.name)
        if match and path.is_dir():
            found.setdefault(int(match[2]), {})[int(match[1])] = path
    if not found:
        return []
    if len(found) > 1:
        raise BadInputError(
            f"{out_dir.parent}: shard folders of {out_dir.name} for several counts "
            f"({', '.join(map(str, sorted(found)))}); delete the stale ones"
        )
    ((count, paths),) = found.items()
    missing = [str(i) for i in range(count) if i not in paths]
    if missing:
        raise BadInputError(
            f"{shard_dir(out_dir, int(missing[0]), count)}: missing (shards {', '.join(missing)} "
            f"of {count} have not run); run them, or delete the shard folders"
        )
    return [paths[i] for i in range(count)]


def windows_frame(parts: list[dict[str, list]]) -> pl.DataFrame:
    """A shard's uncut-id windows as rows: which block (part, k), series, target start,
    values/observed (lists) and, for validation windows, whether they survive custom hiding."""
    frames = []
    for part in parts:
        for name in PARTS:
            for k, block in enumerate(part[name]):
                if block.n == 0:
                    continue
                keep = part["val_keep"][k] if name == "val" else np.ones(block.n, bool)
                frames.append(
                    pl.DataFrame(
                        {
                            "part": [name] * block.n,
                            "k": np.full(block.n, k, np.int32),
                            "series": block.series.astype(np.int64),
                            "target_us": block.target_us.astype(np.int64),
                            "values": pl.Series(block.values).cast(pl.List(pl.Float32)),
                            "observed": pl.Series(block.observed).cast(pl.List(pl.Boolean)),
                            "keep": keep,
                        }
                    )
                )
    schema = {
        "part": pl.String,
        "k": pl.Int32,
        "series": pl.Int64,
        "target_us": pl.Int64,
        "values": pl.List(pl.Float32),
        "observed": pl.List(pl.Boolean),
        "keep": pl.Boolean,
    }
    return pl.concat(frames) if frames else pl.DataFrame(schema=schema)


def merged_parts(skeleton: dict[str, list], frames: list[pl.DataFrame]) -> dict[str, list]:
    """The shards' windows as one chunk's parts: each block of `skeleton` (the empty blocks in
    their fixed order) filled with its windows from every shard, in series order (a series'
    windows keep their order: they all come from one shard)."""
    rows = pl.concat(frames) if frames else None
    out: dict[str, list] = {name: [] for name in (*PARTS, "val_keep")}
    for name in PARTS:
        for k, empty in enumerate(skeleton[name]):
            width = empty.values.shape[1]
            part = (
                rows.filter((pl.col("part") == name) & (pl.col("k") == k))
                if rows is not None
                else None
            )
            if part is None or part.height == 0:
                block, keep = empty, np.ones(0, bool)
            else:
                order = np.argsort(part["series"].to_numpy(), kind="stable")
                part = part[order]
                block = Block(
                    empty.scenario,
                    empty.family,
                    empty.kind,
                    empty.severity,
                    empty.horizon,
                    part["series"].to_numpy(),
                    np.full(part.height, -1, np.int64),  # rows of a shard's chunk: gone
                    part["target_us"].to_numpy(),
                    part["values"].list.to_array(width).to_numpy().astype(np.float32),
                    part["observed"].list.to_array(width).to_numpy().astype(bool),
                    np.full(part.height, -1, np.int64),
                    np.full(part.height, -1, np.int64),
                    empty.params,
                )
                keep = part["keep"].to_numpy()
            out[name].append(block)
            if name == "val":
                out["val_keep"].append(keep)
    return out
