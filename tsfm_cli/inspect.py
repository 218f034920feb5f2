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


def describe_parquet(path: Path, rows: int) -> dict[str, Any]:
    import polars as pl

    lazy = pl.scan_parquet(path)
    schema = lazy.collect_schema()
    head = lazy.head(rows).collect()
    return {
        "rows": lazy.select(pl.len()).collect().item(),
        "schema": {name: str(dtype) for name, dtype in schema.items()},
        "preview": [
            {key: _preview_value(value) for key, value in row.items()} for row in head.to_dicts()
        ],
    }


def inspect_dir(directory: Path | str, rows: int = 5, only: str | None = None) -> dict[str, Any]:
    """Everything `tsfm inspect` shows, as plain data (what `--json` prints)."""
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
    if only is not None and only not in outputs:
        raise BadInputError(f"{directory}: no output named {only!r} (has: {', '.join(outputs)})")
    files: dict[str, Any] = {}
    for name, meta in outputs.items():
        if only is not None and name != only:
            continue
        path = directory / name
        entry: dict[str, Any] = {**meta, "present": path.is_file()}
        if not entry["present"]:
            entry["problem"] = "missing"
        elif meta.get("sha256") is not None and sha256_file(path) != meta["sha256"]:
            # not read further: damaged bytes may not even parse
            entry["problem"] = "changed since written (sha256 differs); rerun the stage"
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
