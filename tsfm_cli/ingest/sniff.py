"""Bytes → text lines, and what kind of table they hold.

Decompresses gzip, refuses binary files, detects the encoding (UTF-8 with or without BOM,
UTF-16 with BOM, else cp1252/Latin-1), the delimiter, preamble lines, the header, a units row
under the header and the decimal/thousands convention. Only a small sample of lines is looked at
in Python; `table` reads the rest.
"""

from __future__ import annotations

import codecs
import csv
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from tsfm_cli.errors import BadInputError
from tsfm_cli.ingest.config import DEFAULT_SENTINELS, IngestConfig

SAMPLE_LINES = 300
DELIMITERS = ("\t", ";", "|", ",")  # tie-break order: ',' is also a decimal mark
WHITESPACE = "whitespace"

NUMBERISH = re.compile(r"^[+-]?(\d[\d.,' ]*|[.,]\d+)([eE][+-]?\d+)?$")
DATEISH = re.compile(r"\d{1,4}[-./]\d{1,2}[-./]\d{1,4}|\d{1,2}:\d{2}|^\d{9,13}(\.\d+)?$")
DATE_CELL = re.compile(r"\d{1,4}[-./]\d{1,2}[-./]\d{1,4}")  # a line's first cell: a date
JUNK_WORDS = {s.lower() for s in DEFAULT_SENTINELS} | {"", "nan"}
UNIT_WORDS = {
    "°c",
    "°f",
    "c",
    "f",
    "k",
    "degc",
    "degf",
    "bar",
    "mbar",
    "barg",
    "pa",
    "kpa",
    "mpa",
    "hpa",
    "psi",
    "mm/s",
    "m/s",
    "m/s2",
    "m/s²",
    "g",
    "a",
    "ma",
    "v",
    "kv",
    "mv",
    "w",
    "kw",
    "mw",
    "hz",
    "rpm",
    "1/min",
    "%",
    "l/min",
    "l/s",
    "l/h",
    "m3/h",
    "m³/h",
    "kg/h",
    "t/h",
    "nm",
    "mm",
    "m",
    "um",
    "µm",
    "s",
    "ms",
    "h",
    "min",
    "-",
    "unit",
    "units",
    "einheit",
    "ppm",
    "db",
    "kwh",
}


@dataclass
class Sniffed:
    """A decoded file and the shape of its table."""

    path: Path
    text: str | None  # the whole decoded file; None for ASCII bytes, read from `utf8` directly
    utf8: bytes | None  # the file's own bytes when they are UTF-8 (no BOM): no re-encoding
    head: list[str]  # its first lines (no line ending), index 0 = line 1
    total_lines: int  # physical lines, a last line without newline included
    encoding: str
    delimiter: str
    names: list[str]  # column names as written (headerless: col1.. or config.columns)
    units: list[str | None]
    header_line: int | None  # 1-based; None when headerless
    data_start: int  # 0-based index of the first line after header/units
    preamble: list[int] = field(default_factory=list)  # 1-based lines before the header
    decimal: str = "."
    thousands: str | None = None
    ends_with_newline: bool = True

    def lines(self) -> pl.Series:
        """Every physical line as one polars string column (index 0 = line 1)."""
        text = self.utf8.decode("utf-8") if self.text is None else self.text
        lines = pl.Series("raw", [text]).str.split("\n").explode()
        if "\r" in text:  # CRLF (or stray CR) line ends; a plain scan beats a strip
            lines = lines.str.strip_chars_end("\r")
        return lines.slice(0, self.total_lines)

    def body(self) -> bytes:
        """The data part (from line `data_start` + 1 on) as UTF-8 bytes."""
        buffer, offset = self.body_at()
        return buffer[offset:]

    def body_at(self) -> tuple[bytes, int]:
        """`body` without copying the file's own UTF-8 bytes: (a buffer, where the body starts
        in it)."""
        if self.utf8 is not None:
            return self.utf8, _line_offset(self.utf8, self.data_start)
        return self.text[_line_offset(self.text, self.data_start) :].encode("utf-8"), 0


def _line_offset(text: str | bytes, line_index: int) -> int:
    """Offset where the 0-based line `line_index` starts."""
    pos = 0
    for _ in range(line_index):
        pos = text.find("\n" if isinstance(text, str) else b"\n", pos) + 1
        if pos == 0:
            return len(text)
    return pos


CHUNK = 1 << 20  # bytes looked at (or decompressed) at a time by the bounded reads
MAX_DECOMPRESSED = 4 << 30  # a .gz that inflates beyond this is refused (a zip bomb)


class LineLimit:
    """Tracks the longest line over chunks of bytes; raises once a line passes the limit, so a
    file that is one huge line is refused after reading at most `limit` bytes of that line."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path, self.limit = path, limit
        self.line, self.current = 1, 0  # the line being read and its length so far

    def feed(self, chunk: bytes | memoryview) -> None:
        hits = np.frombuffer(chunk, dtype=np.uint8) == 10
        if self.limit >= len(hits):
            # a line that starts and ends inside the chunk is shorter than the limit: only the
            # line running into the chunk can pass it (no positions of every line end needed)
            count = int(np.count_nonzero(hits))
            if count:
                if self.current + int(hits.argmax()) > self.limit:
                    self._fail(self.line)
                self.line += count
                self.current = len(hits) - 1 - _last_true(hits)  # bytes after the last line end
            else:
                self.current += len(hits)
            if self.current > self.limit:
                self._fail(self.line)
            return
        ends = np.flatnonzero(hits)
        if len(ends):
            lengths = np.diff(ends, prepend=-1) - 1
            lengths[0] += self.current
            worst = int(np.argmax(lengths))
            if lengths[worst] > self.limit:
                self._fail(self.line + worst)
            self.line += len(ends)
            self.current = len(chunk) - int(ends[-1]) - 1
        else:
            self.current += len(chunk)
        if self.current > self.limit:
            self._fail(self.line)

    def _fail(self, line: int) -> None:
        raise BadInputError(
            f"{self.path}:{line}: line longer than {self.limit:,} bytes (max_line_bytes); "
            "not a line-by-line text export?"
        )


def _last_true(hits: np.ndarray, tail: int = 4096) -> int:
    """Index of the last True (there is one): looked for in the last `tail` first, as lines
    are short (a reversed argmax is slow in numpy)."""
    found = np.flatnonzero(hits[-tail:])
    if len(found):
        return len(hits) - min(tail, len(hits)) + int(found[-1])
    return int(np.flatnonzero(hits)[-1])


def count_byte(data: bytes, byte: int) -> int:
    """How often `byte` occurs in `data`: numpy, a chunk at a time (faster than `bytes.count`,
    and no temporary as large as the file)."""
    codes = np.frombuffer(data, dtype=np.uint8)
    return sum(
        int(np.count_nonzero(codes[i : i + CHUNK] == byte)) for i in range(0, len(codes), CHUNK)
    )


def check_line_lengths(path: Path, raw: bytes, limit: int) -> None:
    """BadInputError naming the first line longer than `limit` bytes (numpy, chunk by chunk)."""
    view = memoryview(raw)
    lines = LineLimit(path, limit)
    for start in range(0, len(view), CHUNK):
        lines.feed(view[start : start + CHUNK])


def gunzip_bounded(path: Path, raw: bytes, max_line_bytes: int) -> bytes:
    """A .gz file's content, decompressed chunk by chunk: a line longer than `max_line_bytes`
    or more than `MAX_DECOMPRESSED` bytes stop it before memory fills (zip bombs)."""
    out, size = [], 0
    lines = LineLimit(path, max_line_bytes)
    data = raw
    try:
        while data:
            inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
            pending = data
            while True:
                chunk = inflate.decompress(pending, CHUNK)
                pending = inflate.unconsumed_tail
                lines.feed(chunk)
                out.append(chunk)
                size += len(chunk)
                if size > MAX_DECOMPRESSED:
                    raise BadInputError(
                        f"{path}: decompresses to more than {MAX_DECOMPRESSED >> 30} GiB"
                    )
                if inflate.eof:
                    break
                if not chunk and not pending:
                    raise BadInputError(f"{path}: corrupt gzip file (truncated)")
            data = inflate.unused_data  # a further gzip member (concatenated .gz files)
            if data and data[:2] != b"\x1f\x8b":
                break  # trailing garbage after the last member, as gzip itself ignores
    except zlib.error as exc:
        raise BadInputError(f"{path}: corrupt gzip file ({exc})") from None
    return b"".join(out)


def read_text(
    path: Path, config: IngestConfig, data: bytes | None = None
) -> tuple[str, str, bytes | None]:
    """The file's text, the encoding used and, when the file is UTF-8 already, its bytes (BOM
    removed); the text is None for ASCII bytes (valid UTF-8 as they are: decoding them whole
    would only copy them). BadInputError for empty, binary, corrupt files and lines over
    `max_line_bytes`.
    `data`: the file's bytes as read (and hashed) by the caller, so both see the same bytes;
    the caller has checked their line lengths unless they are gzip."""
    if data is not None:
        raw = data
    else:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise BadInputError(f"{path}: cannot read ({exc.strerror})") from None
    if raw[:2] == b"\x1f\x8b":
        raw = gunzip_bounded(path, raw, config.max_line_bytes)
    elif data is None:  # bytes given were checked as they were read (ingest.stage)
        check_line_lengths(path, raw, config.max_line_bytes)
    if not raw or raw.isspace():  # (not `strip`: that copies the whole file)
        raise BadInputError(f"{path}: empty file")
    if config.encoding:
        try:
            text = raw.decode(config.encoding)
            utf8 = codecs.lookup(config.encoding).name == "utf-8"
            return text, config.encoding, raw if utf8 else None
        except (UnicodeDecodeError, LookupError) as exc:
            raise BadInputError(f"{path}: cannot decode as {config.encoding} ({exc})") from None
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            return raw.decode("utf-16"), "utf-16", None
        except UnicodeDecodeError:
            pass
    head = raw[:65536]
    codes = np.frombuffer(head, dtype=np.uint8)
    controls = np.count_nonzero((codes < 32) & (codes != 9) & (codes != 10) & (codes != 13))
    if b"\x00" in head or controls > len(head) * 0.01:
        raise BadInputError(f"{path}: binary file, not a text export")
    if raw[:3] == b"\xef\xbb\xbf":
        try:
            return raw[3:].decode("utf-8"), "utf-8-sig", raw[3:]
        except UnicodeDecodeError:
            pass
    if raw.isascii():
        return None, "utf-8", raw
    try:
        return raw.decode("utf-8"), "utf-8", raw
    except UnicodeDecodeError:
        # cp1252 leaves five bytes undefined; Latin-1 maps every byte
        try:
            return raw.decode("cp1252"), "cp1252", None
        except UnicodeDecodeError:
            return raw.decode("latin-1"), "latin-1", None


def split_fields(line: str, delimiter: str) -> list[str]:
    """The cells of one line; a quoted cell may hold the delimiter ("12,5" in a CSV)."""
    if delimiter == WHITESPACE:
        return line.split()
    cells = (
        next(csv.reader([line], delimiter=delimiter), []) if '"' in line else line.split(delimiter)
    )
    return [cell.strip().strip('"').strip() for cell in cells] or [""]


def _is_comment(line: str, prefixes: list[str]) -> bool:
    stripped = line.lstrip()
    return any(stripped.startswith(p) for p in prefixes if p)


def _detect_delimiter(lines: list[str]) -> str:
    """The candidate with the most consistent count per line; whitespace if none is present."""
    body = lines[len(lines) // 3 :] if len(lines) >= 10 else lines
    best, choice = None, None
    for rank, delim in enumerate(DELIMITERS):
        counts = [line.count(delim) for line in body]
        present = sum(1 for c in counts if c) / len(body)
        mode, hits = Counter(c for c in counts if c).most_common(1)[0] if present else (0, 0)
        if present < 0.9 and hits / len(body) < 0.6:
            continue
        score = (hits / len(body), present, -rank, mode)
        if best is None or score > best:
            best, choice = score, delim
    if choice is not None:
        return choice
    counts = [len(line.split()) for line in body]
    mode, hits = Counter(counts).most_common(1)[0]
    if mode >= 2 and hits / len(body) >= 0.6:
        return WHITESPACE
    return ","


def _check_width(path, content, delimiter: str, config: IngestConfig, total_lines: int) -> None:
    """Refuse a table wider than `max_columns` before any line is split into cells: the cost
    of a wide file grows faster than its column count. A transposed file has one line per
    variable: there the lines are counted."""
    limit = config.max_columns
    if config.transposed:
        if total_lines > limit:
            raise BadInputError(
                f"{path}: {total_lines:,} lines = variables of a transposed file "
                f"(limit max_columns {limit:,})"
            )
        return
    for i, line in content:
        width = len(line.split()) if delimiter == WHITESPACE else line.count(delimiter) + 1
        if width > limit:
            raise BadInputError(
                f"{path}:{i + 1}: {width:,} columns (limit max_columns {limit:,}); "
                "split the export or raise max_columns in the recipe"
            )


def _is_data(cells: list[str]) -> bool:
    filled = [c for c in cells if c]
    if not filled:
        return False
    good = sum(
        1 for c in filled if NUMBERISH.match(c) or DATEISH.search(c) or c.lower() in JUNK_WORDS
    )
    return good >= max(1, len(filled) / 2) and any(
        NUMBERISH.match(c) or DATEISH.search(c) for c in filled
    )


def _starts_with_a_date(cells: list[str]) -> bool:
    return bool(cells) and DATE_CELL.match(cells[0].strip().strip('"')) is not None


def _is_units(cells: list[str]) -> bool:
    filled = [c.strip("[]() ").lower() for c in cells if c.strip("[]() ")]
    if not filled:
        return True  # an empty row right under the header
    if any(NUMBERISH.match(c) or DATEISH.search(c) or c in JUNK_WORDS for c in filled):
        return False
    unitlike = sum(1 for c in filled if c in UNIT_WORDS or "°" in c or "/" in c)
    return unitlike >= max(1, len(filled) / 2)


def unique_names(names: list[str]) -> list[str]:
    seen: Counter[str] = Counter()
    out = []
    for i, name in enumerate(names):
        name = name.strip().strip('"').strip().lstrip("\ufeff") or f"col{i + 1}"
        seen[name] += 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


COMMA_DECIMAL = re.compile(r"[+-]?\d+,\d+")
POINT_DECIMAL = re.compile(r"[+-]?\d+\.\d+")
DOT_THOUSANDS = re.compile(r"[+-]?\d{1,3}(\.\d{3})+(,\d+)?")
COMMA_THOUSANDS = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d+)?")
SPACE_THOUSANDS = re.compile(r"[+-]?\d{1,3}( \d{3})+([.,]\d+)?")


def _detect_numbers(cells: list[str]) -> tuple[str, str | None]:
    # compiled once, and only cells holding the pattern's marks are matched: the sample is
    # thousands of cells
    commas = [c for c in cells if "," in c]
    points = [c for c in cells if "." in c]
    comma_dec = sum(1 for c in commas if COMMA_DECIMAL.fullmatch(c))
    point_dec = sum(1 for c in points if POINT_DECIMAL.fullmatch(c))
    # with ',' as the delimiter a cell holds a comma only when quoted: "12,5"
    decimal = "," if comma_dec > point_dec else "."
    thousands = None
    if decimal == "," and any(DOT_THOUSANDS.fullmatch(c) for c in points):
        thousands = "."
    elif decimal == "." and any(COMMA_THOUSANDS.fullmatch(c) for c in commas):
        thousands = ","
    if any(SPACE_THOUSANDS.fullmatch(c) for c in cells if " " in c):
        thousands = " "
    return decimal, thousands


def sniff(path: Path, config: IngestConfig, data: bytes | None = None) -> Sniffed:
    """Decode `path` (or its bytes `data`) and work out its table layout (overridable by the
    recipe)."""
    text, encoding, utf8 = read_text(path, config, data)
    whole: str | bytes = utf8 if text is None else text
    if isinstance(whole, str):
        ends_with_newline, newlines = whole.endswith("\n"), whole.count("\n")
    else:
        ends_with_newline = whole.endswith(b"\n")
        newlines = count_byte(whole, ord("\n"))
    total_lines = newlines + (0 if ends_with_newline else 1)
    start = whole[: _line_offset(whole, SAMPLE_LINES)]
    start = start if isinstance(start, str) else start.decode("utf-8")
    head = start.split("\n")[: min(SAMPLE_LINES, total_lines)]
    head = [line.rstrip("\r") for line in head]
    prefixes = config.comment_prefixes
    content = [
        (i, line) for i, line in enumerate(head) if line.strip() and not _is_comment(line, prefixes)
    ]
    if not content:
        raise BadInputError(f"{path}: no data lines (only blank or comment lines)")
    if config.delimiter:
        delimiter = {"tab": "\t", "\\t": "\t", "space": WHITESPACE}.get(
            config.delimiter, config.delimiter
        )
    else:
        delimiter = _detect_delimiter([line for _, line in content])
    _check_width(path, content, delimiter, config, total_lines)
    split = [(i, split_fields(line, delimiter)) for i, line in content]
    body = split[len(split) // 3 :] if len(split) >= 10 else split
    counts = Counter(len(cells) for _, cells in body)
    width = max(counts.items(), key=lambda kv: (kv[1], kv[0]))[0]

    header_idx: int | None = None
    units_idx: int | None = None
    if config.skip_lines is not None and not config.headerless:
        header_idx = config.skip_lines
        if header_idx >= len(head):
            raise BadInputError(f"{path}: skip_lines {header_idx} skips the whole file")
        nxt = next((i for i, _ in content if i > header_idx), None)
        if nxt is not None and _is_units(split_fields(head[nxt], delimiter)):
            units_idx = nxt
    elif not config.headerless:
        first_data = next(
            (
                k
                for k, (_, cells) in enumerate(split)
                if len(cells) >= width - 1 and _is_data(cells)
            ),
            None,
        )
        if first_data is None:
            raise BadInputError(
                f"{path}: no data lines found (no row of numbers with {width} columns)"
            )
        block = []
        k = first_data - 1
        while k >= 0 and _starts_with_a_date(split[k][1]):
            k -= 1  # a data line too garbled to look like data is still not the header
        while k >= 0 and len(split[k][1]) in (width, width + 1) and not _is_data(split[k][1]):
            block.insert(0, split[k][0])
            k -= 1
        if len(block) >= 2 and _is_units(split_fields(head[block[-1]], delimiter)):
            header_idx, units_idx = block[-2], block[-1]
        elif block:
            header_idx = block[-1]
        elif len(split[first_data][1]) < width and first_data > 0:
            header_idx = split[first_data - 1][0]
    if header_idx is not None:
        names = split_fields(head[header_idx], delimiter)
        start = (units_idx if units_idx is not None else header_idx) + 1
        preamble = [i + 1 for i in range(header_idx) if head[i].strip()]
    else:
        names = list(config.columns) if config.columns else [f"col{i + 1}" for i in range(width)]
        start = 0
        preamble = []
    # trailing delimiter on the header: an unnamed empty last column
    while len(names) > 1 and not names[-1].strip():
        names = names[:-1]
    units: list[str | None] = [None] * len(names)
    if units_idx is not None:
        unit_cells = split_fields(head[units_idx], delimiter)
        units = [
            (unit_cells[i] or None) if i < len(unit_cells) else None for i in range(len(names))
        ]
    names = unique_names(names)
    sample_cells: list[str] = []
    for i, cells in split:
        if i >= start:
            sample_cells.extend(cells[1:])
    decimal, thousands = _detect_numbers(sample_cells)
    if config.decimal:
        decimal = config.decimal
    if config.thousands is not None:
        thousands = config.thousands or None
    return Sniffed(
        path=path,
        text=text,
        utf8=utf8,
        head=head,
        total_lines=total_lines,
        encoding=encoding,
        delimiter=delimiter,
        names=names,
        units=units,
        header_line=None if header_idx is None else header_idx + 1,
        data_start=start,
        preamble=preamble,
        decimal=decimal,
        thousands=thousands,
        ends_with_newline=ends_with_newline,
    )
