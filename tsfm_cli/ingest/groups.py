"""Group keys (line, machine, …) from a file's path, and sensor names from header cells.

By default every path part of the form `<letters><digits>` is a key: `line1/machine2_2024-03.csv`
gives line=line1, machine=machine2. When the file name itself holds no such part, its stem becomes
the key `file`, so that unrelated files never merge into one series. A recipe `group_pattern`
(a regex with named groups searched in the path) replaces this rule.
"""

from __future__ import annotations

import re
from pathlib import PurePath

KEY_TOKEN = re.compile(r"^([A-Za-z]+)[-_ ]?(\d+)$")
RESERVED = {
    "series_id",
    "source",
    "sensor",
    "timestamp",
    "value",
    "observed",
    "flags",
    "freq_s",
    "raw_line",
}
UNIT_IN_NAME = re.compile(r"\s*[\[(]([^\])]*)[\])]\s*$")


def _key_name(letters: str) -> str:
    name = letters.lower()
    return f"{name}_key" if name in RESERVED else name


def keys_from_path(rel: PurePath, pattern: str | None) -> dict[str, str]:
    if pattern:
        match = re.search(pattern, rel.as_posix())
        if not match:
            return {}
        return {_key_name(k): v for k, v in match.groupdict().items() if v is not None}
    keys: dict[str, str] = {}
    for part in rel.parent.parts:
        match = KEY_TOKEN.match(part)
        if match:
            keys.setdefault(_key_name(match.group(1)), part)
    stem = rel.name
    for suffix in (".gz", ".csv", ".tsv", ".txt", ".dat"):
        stem = stem.removesuffix(suffix)
    found = False
    for token in re.split(r"[_\-. ]+", stem):
        match = KEY_TOKEN.match(token)
        if match:
            keys.setdefault(_key_name(match.group(1)), token)
            found = True
    if not found:
        keys.setdefault("file", stem)
    return keys


def sensor_name(header: str) -> tuple[str, str | None]:
    """'Temperatur [°C]' → ('temperatur', '°C'); names become lower_snake_case."""
    unit = None
    match = UNIT_IN_NAME.search(header)
    if match and match.start() > 0:
        unit = match.group(1).strip() or None
        header = header[: match.start()]
    name = re.sub(r"[^0-9a-zA-Z]+", "_", header.strip()).strip("_").lower()
    return name or "value", unit
