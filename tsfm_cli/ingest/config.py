"""The `ingest:` recipe keys (one dataclass field each) and their defaults."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from tsfm_cli.errors import BadInputError

# Text that means "no reading" in historian / PLC / spreadsheet exports (compared
# case-insensitively); entries that are numbers are compared as numbers after parsing.
DEFAULT_SENTINELS = [
    "-999",
    "-9999",
    "9999",
    "NaN",
    "N/A",
    "#N/A",
    "NA",
    "null",
    "None",
    "-",
    "--",
    "ERR",
    "ERROR",
    "#VALUE!",
    "#DIV/0!",
    "#REF!",
    "inf",
    "-inf",
]

FAULTS = ("out_of_range", "spike", "stuck")

# keys of a `series:` entry; spike/stuck/out_of_range: false (YAML `off`) turns that check off
SERIES_KEYS = {
    "spike_threshold": (float, 0, 1e6),
    "stuck_points": (int, 0, 1_000_000_000),
    "mask_faults": (list, None, None),
    "spike": (bool, None, None),
    "stuck": (bool, None, None),
    "out_of_range": (bool, None, None),
}

# Settings that change how a file is parsed; a change invalidates the per-file cache.
PARSE_KEYS = (
    "timezone",
    "timestamp_column",
    "date_column",
    "time_column",
    "timestamp_format",
    "layout",
    "sensor_column",
    "value_column",
    "delimiter",
    "decimal",
    "thousands",
    "encoding",
    "skip_lines",
    "comment_prefixes",
    "headerless",
    "columns",
    "transposed",
    "start",
    "interval",
    "group_pattern",
    "group_columns",
    "sentinels",
    "extra_sentinels",
)


@dataclass
class IngestConfig:
    # where the time is
    timezone: str | None = None  # plant time zone of naive timestamps (None: they are UTC)
    timestamp_column: str | None = None
    date_column: str | None = None  # separate date and time columns
    time_column: str | None = None
    timestamp_format: str | None = None  # strftime format; None: detected
    start: str | None = None  # headerless / timestamp-less files: time of the first row
    interval: str | None = None  # ... and the sampling interval ("3m", "1s", "1h")
    # how the file is laid out
    layout: Literal["auto", "wide", "long"] = "auto"
    sensor_column: str | None = None  # long layout
    value_column: str | None = None
    delimiter: str | None = None  # "," ";" "\t" "|" or "whitespace"; None: detected
    decimal: Literal[".", ","] | None = None
    thousands: str | None = None
    encoding: str | None = None
    skip_lines: int | None = None  # preamble lines before the header; None: detected
    comment_prefixes: list[str] = field(default_factory=lambda: ["#", "//"])
    headerless: bool | None = None  # None: detected (first row all numbers)
    columns: list[str] | None = None  # names for a headerless file's columns
    # one line per variable and one column per sample (TEP's d00.dat); times from start/interval
    transposed: bool = False
    # group keys (line, machine) from the path, or from columns
    group_pattern: str | None = None  # regex with named groups on the path
    group_columns: list[str] = field(default_factory=list)
    # values
    sentinels: list[str] = field(default_factory=lambda: list(DEFAULT_SENTINELS))
    extra_sentinels: list[str] = field(default_factory=list)
    # columns that are not sensors (labels, counters, ids): globs on the sensor name, left out
    exclude_sensors: list[str] = field(default_factory=list)
    # grid
    freq: str | None = None  # grid step; None: median spacing per series
    duplicates: Literal["first", "last", "mean"] = "first"
    # faults
    ranges: dict[str, list[float | None]] = field(default_factory=dict)  # pattern → [lo, hi]
    spike_window: int = 11
    spike_threshold: float = 6.0  # robust z (MAD) above which a point is a spike; 0: off
    stuck_points: int = 30  # this many identical consecutive readings = stuck; 0: off
    mask_faults: list[str] = field(default_factory=lambda: list(FAULTS))
    # per-series fault settings: glob on series id or sensor → SERIES_KEYS (later entries win),
    # e.g. {"plant/valve*": {stuck: off}}: a valve that is meant to stay put is not "stuck"
    series: dict[str, dict[str, Any]] = field(default_factory=dict)
    # gap filling (never changes `observed`)
    fill: Literal["none", "ffill", "linear"] = "none"
    max_gap: int = 3  # longest gap (grid points) that is filled
    # output: the series table's files hold one series over one day, week or month (UTC);
    # auto: the finest that holds 50,000 points of the fastest series (README "Artifacts")
    partition: Literal["auto", "day", "week", "month"] = "auto"
    # per-file settings: glob on the path (relative to the source folder) → parse keys
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    # gates
    max_missing: float | None = None
    # what max_missing gates on: points with no reading (absent), points flagged by the fault
    # checks (faults: spike, stuck, out_of_range, sentinel) or either (both)
    gate_on: Literal["absent", "faults", "both"] = "both"
    strict: bool = False
    # limits on hostile input, checked before parsing (README "Ingest limits"): a longer line or
    # a wider table is refused, the file goes to failed_files
    max_line_bytes: int = 1_048_576
    max_columns: int = 1000


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|m|min|h|d)?\s*$", re.IGNORECASE)
_UNIT_S = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(text: str | int | float, what: str) -> int:
    """'10s', '5m', '1h', '1d' or a number of seconds → whole seconds (≥ 1)."""
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        match = _DURATION.match(str(text))
        if not match:
            raise BadInputError(f"{what}: '{text}' is not a duration such as 10s, 5m, 1h, 1d")
        unit = match.group(2).lower() if match.group(2) else None
        seconds = float(match.group(1)) * _UNIT_S[unit]
    if seconds < 1:
        raise BadInputError(f"{what}: '{text}' is shorter than one second")
    return int(round(seconds))


def format_duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def for_file(config: IngestConfig, rel_path: str) -> IngestConfig:
    """The settings for one file: `files:` entries whose glob matches, applied in order (their
    keys, types and values were checked by `validate`, whether or not a glob matches)."""
    import fnmatch

    values: dict[str, Any] = {}
    for pattern, settings in config.files.items():
        if fnmatch.fnmatch(rel_path, pattern) or fnmatch.fnmatch(rel_path.split("/")[-1], pattern):
            values.update(settings)
    if not values:
        return config
    return _with_file_settings(config, values, _Located(lambda *keys: f"files: key {keys}"))


class _Located:
    """Locates per-file keys under `files.<glob>` for `build_config` (a RecipeSource's `where`)."""

    def __init__(self, where, *prefix: str) -> None:
        self._where, self._prefix = where, prefix

    def where(self, *keys: str) -> str:
        return self._where(*self._prefix, *keys)


def _with_file_settings(config: IngestConfig, values: dict, source) -> IngestConfig:
    from tsfm_cli.recipe import build_config

    for key in values:
        if key not in PARSE_KEYS:
            raise BadInputError(
                f"{source.where(key)}: only parse settings may differ per file ({key})"
            )
    base = {k: v for k, v in dataclasses.asdict(config).items() if k in PARSE_KEYS}
    merged = build_config(IngestConfig, {**base, **values}, source)
    return dataclasses.replace(config, **{k: getattr(merged, k) for k in PARSE_KEYS})


def check_settings(config: IngestConfig, source) -> None:
    """`validate` with the keys located in the recipe `source` (a RecipeSource)."""
    validate(config, source.where)


def validate(config: IngestConfig, where) -> None:
    """Checks build_config cannot do (values, not types). `where(key)` locates a key."""
    if config.timezone:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(config.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise BadInputError(
                f"{where('timezone')}: unknown time zone '{config.timezone}'"
            ) from None
    for key in ("freq", "interval"):
        value = getattr(config, key)
        if value is not None:
            parse_duration(value, where(key))
    for key, value in config.ranges.items():
        if not (isinstance(value, list) and len(value) == 2):
            raise BadInputError(f"{where('ranges', key)}: needs [low, high]")
        low, high = value
        if low is not None and high is not None and low > high:
            raise BadInputError(
                f"{where('ranges', key)}: [{low:g}, {high:g}] is inverted (low > high) and would "
                "mask every reading; write [low, high]"
            )
    for name in config.mask_faults:
        if name not in FAULTS:
            raise BadInputError(f"{where('mask_faults')}: unknown fault '{name}' ({FAULTS})")
    if config.group_pattern:
        try:
            re.compile(config.group_pattern)
        except re.error as exc:
            raise BadInputError(f"{where('group_pattern')}: invalid regex ({exc})") from None
    if config.max_missing is not None and not 0 <= config.max_missing <= 1:
        raise BadInputError(f"{where('max_missing')}: must be between 0 and 1")
    if config.spike_window < 3:
        raise BadInputError(f"{where('spike_window')}: must be at least 3")
    for pattern, settings in config.files.items():
        if not isinstance(settings, dict):
            raise BadInputError(f"{where('files', pattern)}: needs a mapping of settings")
        for key in settings:
            if key not in PARSE_KEYS:
                raise BadInputError(
                    f"{where('files', pattern, key)}: '{key}', which is not a per-file "
                    f"setting (allowed: {', '.join(PARSE_KEYS)})"
                )
        # types and values now, whether or not the glob matches a file of this run
        located = _Located(where, "files", pattern)
        file_config = _with_file_settings(config, settings, located)
        validate(dataclasses.replace(file_config, files={}, series={}), located.where)
    for pattern, settings in config.series.items():
        _check_series_settings(settings, lambda *keys, p=pattern: where("series", p, *keys))


def _check_series_settings(settings: Any, where) -> None:
    if not isinstance(settings, dict):
        raise BadInputError(f"{where()}: needs a mapping of fault settings")
    for key, value in settings.items():
        if key not in SERIES_KEYS:
            raise BadInputError(
                f"{where(key)}: not a per-series setting (allowed: {', '.join(SERIES_KEYS)})"
            )
        kind, low, high = SERIES_KEYS[key]
        if kind is bool and not isinstance(value, bool):
            raise BadInputError(f"{where(key)}: expected on/off (true/false), got {value!r}")
        if kind in (int, float):
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not number or (kind is int and not isinstance(value, int)):
                raise BadInputError(f"{where(key)}: expected {kind.__name__}, got {value!r}")
            if not low <= value <= high:
                raise BadInputError(f"{where(key)}: {value!r} is out of range ({low} … {high:g})")
        if kind is list and (
            not isinstance(value, list) or any(name not in FAULTS for name in value)
        ):
            raise BadInputError(f"{where(key)}: expected a list of {', '.join(FAULTS)}")


def series_settings(config: IngestConfig, series_ids: list[str], sensors: list[str]) -> dict:
    """Per series (in order): the fault settings after the `series:` entries matching its id
    or sensor: {"spike_threshold": [...], "stuck_points": [...], "out_of_range": [...] (on),
    "mask": {fault: [...]}}."""
    import fnmatch

    n = len(series_ids)
    out = {
        "spike_threshold": [config.spike_threshold] * n,
        "stuck_points": [config.stuck_points] * n,
        "out_of_range": [True] * n,
        "mask": {fault: [fault in config.mask_faults] * n for fault in FAULTS},
    }
    for pattern, settings in config.series.items():
        for i, (sid, sensor) in enumerate(zip(series_ids, sensors, strict=True)):
            if not (fnmatch.fnmatchcase(sid, pattern) or fnmatch.fnmatchcase(sensor, pattern)):
                continue
            for key, value in settings.items():
                if key in ("spike_threshold", "stuck_points"):
                    out[key][i] = value
                elif key == "spike":
                    out["spike_threshold"][i] = config.spike_threshold if value else 0.0
                elif key == "stuck":
                    out["stuck_points"][i] = config.stuck_points if value else 0
                elif key == "out_of_range":
                    out["out_of_range"][i] = value
                elif key == "mask_faults":
                    for fault in FAULTS:
                        out["mask"][fault][i] = fault in value
    return out
