"""`tsfm inspect`: what a stage directory holds — manifest, files, schemas and a preview."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tsfm_cli.errors import BadInputError
from tsfm_cli.stagedir import MANIFEST, SCHEMA_VERSIONS, read_manifest, sha256_file


def _preview_value(value: Any, max_items: int = 6) -> Any:
    if isinstance(value, list):
        shown = [_preview_value(v, max_items) for v in value[:max_items]]
        return shown + ([f"… {len(value) - max_items} more"] if len(value) > max_items else [])
    if isinstance(value, float):
        return round(value, 6)
    if value is None or isinstance(value, (int, str, bool)):
        return value
    return str(value)


def describe_parquet(path: Path | list[Path], rows: int) -> dict[str, Any]:
    """Rows, schema and the first `rows` rows of a parquet file, or of a dataset's files read
    as one table (in table order, without hive columns)."""
    import polars as pl

    from tsfm_cli.series_dataset import scan_series

    lazy = scan_series(path) if isinstance(path, list) else pl.scan_parquet(path)
    schema = lazy.collect_schema()
    head = lazy.head(rows).collect()
    return {
        "rows": lazy.select(pl.len()).collect().item(),
        "schema": {name: str(dtype) for name, dtype in schema.items()},
        "preview": [
            {key: _preview_value(value) for key, value in row.items()} for row in head.to_dicts()
        ],
    }


def _problem(path: Path, meta: dict[str, Any]) -> str | None:
    if not path.is_file():
        return "missing"
    if meta.get("sha256") is not None and sha256_file(path) != meta["sha256"]:
        # not read further: damaged bytes may not even parse
        return "changed since written (sha256 differs); rerun the stage"
    return None


def _describe_dataset(directory: Path, outputs: dict[str, Any], rows: int) -> dict[str, Any]:
    """One entry for the series dataset: its files' rows and bytes summed, every file's bytes
    checked (the first problem named), and the files read as one table."""
    from tsfm_cli.series_dataset import ordered

    names = ordered(outputs)
    entry: dict[str, Any] = {
        "files": len(names),
        "rows": sum(outputs[n].get("rows", 0) for n in names),
        "bytes": sum(outputs[n].get("bytes", 0) for n in names),
        "present": all((directory / n).is_file() for n in names),
    }
    for name in names:
        problem = _problem(directory / name, outputs[name])
        if problem is not None:
            entry["problem"] = f"{name}: {problem}"
            return entry
    expected = entry["rows"]
    entry.update(describe_parquet([directory / n for n in names], rows))
    if entry["rows"] != expected:
        entry["problem"] = f"manifest says {expected} rows, files have {entry['rows']}"
    return entry


def inspect_dir(directory: Path | str, rows: int = 5, only: str | None = None) -> dict[str, Any]:
    """Everything `tsfm inspect` shows, as plain data (what `--json` prints). The series
    dataset of an ingest directory (`series/`, a file per series and chunk) is one entry."""
    from tsfm_cli.series_dataset import DATASET

    directory = Path(directory)
    if not directory.is_dir():
        raise BadInputError(f"{directory}: no such directory")
    manifest = read_manifest(directory)
    if manifest is None:
        raise BadInputError(f"{directory}: not a tsfm stage directory (no {MANIFEST})")
    stage = manifest.get("stage")
    if stage not in SCHEMA_VERSIONS:
        raise BadInputError(f"{directory / MANIFEST}: unknown stage {stage!r}")
    outputs = manifest.get("outputs", {})
    dataset = f"{DATASET}/"
    shown = [n for n in outputs if not n.startswith(dataset)]
    if any(n.startswith(dataset) for n in outputs):
        shown.insert(0, dataset)
    if only is not None and only in (DATASET, dataset) and dataset in shown:
        only = dataset
    if only is not None and only not in shown:
        raise BadInputError(f"{directory}: no output named {only!r} (has: {', '.join(shown)})")
    files: dict[str, Any] = {}
    for name in shown:
        if only is not None and name != only:
            continue
        if name == dataset:
            files[name] = _describe_dataset(directory, outputs, rows)
            continue
        meta = outputs[name]
        path = directory / name
        entry: dict[str, Any] = {**meta, "present": path.is_file()}
        problem = _problem(path, meta)
        if problem is not None:
            entry["problem"] = problem
        elif name.endswith(".parquet"):
            entry.update(describe_parquet(path, rows))
            if "rows" in meta and meta["rows"] != entry["rows"]:
                entry["problem"] = f"manifest says {meta['rows']} rows, file has {entry['rows']}"
        files[name] = entry
    keys = ("stage", "schema_version", "tsfm_version", "created_utc", "command", "summary")
    return {
        "path": str(directory),
        **{key: manifest.get(key) for key in keys},
        "config": manifest.get("config", {}),
        "inputs": manifest.get("inputs", []),
        "files": files,
    }
