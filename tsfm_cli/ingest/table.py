"""The data lines of a file → a table of string cells, one column per header name.

Lines with the wrong number of fields (a file still being written, a ragged export), comment
lines and blank lines are told apart first, each with its line number; well-formed lines become
cells. Two ways, same result:

- `read_fast`: fields are counted per line over the raw bytes with numpy (quote-aware), only the
  few odd lines are looked at in Python, and polars' CSV reader splits the cells (quoted cells
  with the delimiter inside work);
- `split_table`: everything vectorised over a polars column of lines (`count_matches`,
  `split_exact`), for what the fast way does not take: whitespace-separated files, a line break
  inside quotes, a single column, very many odd lines.
"""

from __future__ import annotations

import re

import numpy as np
import polars as pl

from tsfm_cli.ingest.sniff import WHITESPACE, Sniffed, unique_names

REJECT_SCHEMA = {
    "file": pl.String,
    "line": pl.Int64,
    "column": pl.String,
    "raw": pl.String,
    "reason": pl.String,
}


def raw_name(name: str) -> str:
    """Cell columns are named `raw:<header>` so no header can clash with our own columns."""
    return f"raw:{name}"


def rejects_frame(file: str, frame: pl.DataFrame | None = None) -> pl.DataFrame:
    """A rejects table for `file` from a frame with line/column/raw/reason (or an empty one)."""
    if frame is None or frame.height == 0:
        return pl.DataFrame(schema=REJECT_SCHEMA)
    return frame.select(
        pl.lit(file, pl.String).alias("file"),
        pl.col("line").cast(pl.Int64),
        pl.col("column").cast(pl.String),
        pl.col("raw").cast(pl.String),
        pl.col("reason").cast(pl.String),
    )


def read_cells(
    sniffed: Sniffed, comment_prefixes: list[str]
) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """(cells with a `line` column, line rejects, counts) for the data part of a file."""
    fast = read_fast(sniffed, comment_prefixes)
    return fast if fast is not None else split_table(sniffed, comment_prefixes)


MAX_ODD_LINES = 10_000  # lines looked at one by one before the vectorised split is cheaper
QUOTE = ord('"')


def read_fast(
    sniffed: Sniffed, comment_prefixes: list[str]
) -> tuple[pl.DataFrame, pl.DataFrame, dict] | None:
    """`read_cells` with polars' CSV reader, or None where the file needs `split_table`."""
    n_fields, delim = len(sniffed.names), sniffed.delimiter
    if delim == WHITESPACE or len(delim.encode()) != 1 or delim in "\r\n" or n_fields < 2:
        return None
    # the file's own bytes where they are UTF-8: the body is not copied to be counted
    buffer, offset = sniffed.body_at()
    raw = np.frombuffer(buffer, dtype=np.uint8, offset=offset)
    quoted = buffer.find(b'"', offset) >= 0
    if quoted:
        ends = np.flatnonzero(raw == ord("\n"))
        if len(raw) and raw[-1] != ord("\n"):
            ends = np.append(ends, len(raw))
    else:
        ends, before = _line_ends(raw, ord(delim))
    if not len(ends) or len(ends) != sniffed.total_lines - sniffed.data_start:
        return None
    starts = np.r_[0, ends[:-1] + 1]
    if quoted:
        delims = np.flatnonzero(raw == ord(delim))
        quotes = np.flatnonzero(raw == QUOTE)
        if (np.searchsorted(quotes, ends) % 2).any():
            return None  # a line break inside quotes: records are not lines
        delims = delims[np.searchsorted(quotes, delims) % 2 == 0]
        before = np.searchsorted(delims, ends)
        del delims
    # delimiters before each line's end, less those before the line's start (= before the
    # previous line's end: no delimiter is a line break)
    counts = np.diff(before, prepend=0) + 1
    last = np.maximum(ends - 1, 0)
    last = last - ((raw[last] == ord("\r")) & (last > starts))
    # one trailing delimiter on a line is an empty extra column of the export, not a field
    trailing = (counts == n_fields + 1) & (ends > starts) & (raw[last] == ord(delim))
    lead = np.frombuffer(b" \t\r" + "".join(p[:1] for p in comment_prefixes).encode(), np.uint8)
    first = raw[np.minimum(starts, max(len(raw) - 1, 0))]
    odd = ((counts != n_fields) & ~trailing) | (ends == starts) | np.isin(first, lead)
    odd_idx = np.flatnonzero(odd)
    if len(odd_idx) > MAX_ODD_LINES:
        return None
    try:
        frame = pl.read_csv(
            # one copy of the body, behind a header of our own names
            b"".join([(delim.join(f"c{i}" for i in range(n_fields)) + "\n").encode(), raw.data]),
            separator=delim,
            quote_char='"' if quoted else None,
            infer_schema=False,
            truncate_ragged_lines=True,
            empty_string_is_null=False,
        )
    except pl.exceptions.PolarsError:
        return None
    if frame.height != len(ends):
        return None
    first_line = sniffed.data_start + 1
    odd_lines = _classify(
        pl.DataFrame(
            {
                "line": first_line + odd_idx,
                "raw": [
                    bytes(raw[a:b]).decode("utf-8").rstrip("\r")
                    for a, b in zip(starts[odd_idx].tolist(), ends[odd_idx].tolist(), strict=True)
                ],
                "count": counts[odd_idx],
            },
            schema={"line": pl.Int64, "raw": pl.String, "count": pl.Int64},
        ).with_columns(text=pl.col("raw")),
        sniffed,
        comment_prefixes,
    )
    dropped = odd_lines.filter(pl.col("blank") | pl.col("reason").is_not_null())
    drop = dropped["line"].to_numpy() - first_line
    blank = int(odd_lines["blank"].sum())
    fields = [f"c{i}" for i in range(n_fields)]
    cells = frame.with_columns(
        line=pl.int_range(first_line, first_line + frame.height, dtype=pl.Int64)
    )
    tail = frame.height - len(drop)
    if len(drop) and (drop >= tail).all():  # only the last lines (one cut off): no copy
        cells = cells.head(tail)
    elif len(drop):
        keep = np.ones(len(ends), dtype=bool)
        keep[drop] = False
        cells = cells.filter(pl.Series(keep))
    if quoted or _padded(raw, delim):
        cells = cells.with_columns(_unpadded(fields))
    # renamed as Series: a select would rechunk every column (polars' reader gives a chunk
    # per thread) only to line them up with `line`
    cells = pl.DataFrame(
        [
            cells["line"],
            *[cells[f].alias(raw_name(n)) for f, n in zip(fields, sniffed.names, strict=True)],
        ]
    )
    counts_out = _counts(sniffed, data_lines=len(ends) - blank, blank=blank)
    return cells, _line_rejects(odd_lines), counts_out


def _unpadded(fields: list[str]) -> pl.Expr:
    """Cells without the blanks and quotes around them."""
    return pl.col(fields).str.strip_chars().str.strip_chars('"').str.strip_chars()


SCAN = 1 << 20  # bytes compared at a time: temporaries stay in cache, not 2 × the file


def _line_ends(raw: np.ndarray, delim: int) -> tuple[np.ndarray, np.ndarray]:
    """(where each line ends: its newline or the end of the bytes, the number of delimiters
    before that), chunk by chunk: no array of every delimiter's offset (5 M of them for 500 k
    lines of 11 fields) and no temporary as large as the file."""
    ends, before, seen = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)], 0
    for start in range(0, len(raw), SCAN):
        chunk = raw[start : start + SCAN]
        newlines = np.flatnonzero(chunk == ord("\n"))
        delims = np.flatnonzero(chunk == delim)
        ends.append(newlines + start)
        before.append(np.searchsorted(delims, newlines) + seen)
        seen += len(delims)
    if len(raw) and raw[-1] != ord("\n"):  # a last line without a newline
        ends.append(np.array([len(raw)]))
        before.append(np.array([seen]))
    return np.concatenate(ends), np.concatenate(before)


def _padded(raw: np.ndarray, delim: str) -> bool:
    """Whether some cell starts or ends with a blank (next to a delimiter or a line end)."""
    if not len(raw):
        return False
    blanks = [ord(b) for b in sorted({" ", "\t"} - {delim})]
    if raw[0] in blanks or raw[-1] in blanks:
        return True
    for start in range(0, len(raw), SCAN):
        chunk = raw[start : start + SCAN]
        for blank in blanks:
            at = np.flatnonzero(chunk == blank) + start
            at = at[(at > 0) & (at < len(raw) - 1)]
            # the bytes on either side of each blank (a timestamp's blank is many)
            for side in (raw[at - 1], raw[at + 1]):
                if _is_edge(side, delim).any():
                    return True
    return False


def _is_edge(codes: np.ndarray, delim: str) -> np.ndarray:
    """A delimiter or a line end (compared one by one: cheaper than `np.isin` here)."""
    return (codes == ord(delim)) | (codes == ord("\n")) | (codes == ord("\r"))


def _classify(lines: pl.DataFrame, sniffed: Sniffed, comment_prefixes: list[str]) -> pl.DataFrame:
    """Lines (`line`, `raw`, `text` with the delimiter, field `count`) + `blank` and `reason`
    (null for a data line): comment, truncated last line, wrong number of fields. Trailing
    empty fields (delimiters, blanks at the end) do not count against the width."""
    n_fields = len(sniffed.names)
    delim = " " if sniffed.delimiter == WHITESPACE else sniffed.delimiter
    stripped = pl.col("raw").str.strip_chars()
    is_comment = pl.lit(False)
    for prefix in comment_prefixes:
        if prefix:
            is_comment = is_comment | stripped.str.starts_with(prefix)
    trailing = re.escape(delim) + r"[\s" + re.escape(delim) + r"]*$"
    if lines.select((pl.col("count") > n_fields).any()).item():  # trailing delimiters?
        trimmed = pl.col("text").str.replace(trailing, "").str.count_matches(delim, literal=True)
        count_trimmed = trimmed + 1
    else:
        count_trimmed = pl.col("count")
    ok_width = (pl.col("count") == n_fields) | (
        (pl.col("count") > n_fields) & (count_trimmed <= n_fields)
    )
    truncated = (pl.col("line") == sniffed.total_lines) & pl.lit(not sniffed.ends_with_newline)
    reason = (
        pl.when(is_comment)
        .then(pl.lit("comment line"))
        .when(~ok_width & truncated)
        .then(
            pl.format(
                "truncated last line ({} of {} fields; file still being written?)",
                pl.col("count"),
                pl.lit(n_fields),
            )
        )
        .when(~ok_width)
        .then(pl.format("wrong number of fields ({} of {})", pl.col("count"), pl.lit(n_fields)))
        .otherwise(None)
    )
    blank = stripped.str.len_bytes() == 0
    return lines.with_columns(blank=blank, reason=pl.when(blank).then(None).otherwise(reason))


def _line_rejects(lines: pl.DataFrame) -> pl.DataFrame:
    return lines.filter(pl.col("reason").is_not_null()).select(
        "line", pl.lit(None, pl.String).alias("column"), "raw", "reason"
    )


def _counts(sniffed: Sniffed, data_lines: int, blank: int) -> dict:
    return {
        "lines_total": sniffed.total_lines,
        "lines_header": sniffed.data_start - len(sniffed.preamble),
        "lines_preamble": len(sniffed.preamble),
        "lines_blank": blank,
        "lines_data": data_lines,
    }


def split_table(
    sniffed: Sniffed, comment_prefixes: list[str]
) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """`read_cells` over a polars column of lines."""
    n_fields = len(sniffed.names)
    total = sniffed.total_lines
    body = pl.DataFrame(
        {
            "line": pl.int_range(sniffed.data_start + 1, total + 1, dtype=pl.Int64, eager=True),
            "raw": sniffed.lines().slice(sniffed.data_start),
        }
    )
    if sniffed.delimiter == WHITESPACE:
        delim = " "
        text = pl.col("raw").str.strip_chars().str.replace_all(r"\s+", " ")
    else:
        delim = sniffed.delimiter
        text = pl.col("raw")
    body = body.with_columns(text=text).with_columns(
        count=pl.col("text").str.count_matches(delim, literal=True) + 1
    )
    body = _classify(body, sniffed, comment_prefixes).filter(~pl.col("blank"))
    bad = _line_rejects(body)
    good = body.filter(pl.col("reason").is_null())
    fields = [f"field_{i}" for i in range(n_fields)]
    cells = good.select(
        "line",
        pl.col("text").str.split_exact(delim, n_fields - 1).struct.rename_fields(fields),
    ).unnest("text")
    # strip blanks and quotes around cells, only when some line has them
    padded = rf'"|\s{re.escape(delim)}|{re.escape(delim)}\s|^\s|\s$' if delim != " " else '"'
    if good.select(pl.col("text").str.contains(padded).any()).item():
        cells = cells.with_columns(_unpadded(fields))
    cells = cells.rename({f: raw_name(n) for f, n in zip(fields, sniffed.names, strict=True)})
    counts = _counts(
        sniffed, data_lines=body.height, blank=int(total - sniffed.data_start - body.height)
    )
    return cells, bad, counts


def transpose_cells(
    cells: pl.DataFrame, names: list[str], variable_names: list[str] | None
) -> tuple[pl.DataFrame, list[str], dict[str, int]]:
    """A file stored one line per variable → one row per sample: (cells, names, the line each
    variable came from). A first field that is text on every line is the variable's name."""
    raw_cols = [raw_name(n) for n in names]
    first = cells[raw_cols[0]].str.strip_chars()
    named = len(first) > 0 and first.cast(pl.Float64, strict=False).is_null().all()
    if named:
        labels, raw_cols = first.to_list(), raw_cols[1:]
    elif variable_names:
        labels = list(variable_names)[: cells.height]
    else:
        labels = [f"col{i + 1}" for i in range(cells.height)]
    labels += [f"col{i + 1}" for i in range(len(labels), cells.height)]
    labels = unique_names(labels)
    samples = cells.select(raw_cols).transpose(column_names=[raw_name(n) for n in labels])
    samples = samples.with_columns(line=pl.lit(None, pl.Int64)).select(
        "line", *[raw_name(n) for n in labels]
    )
    return samples, labels, dict(zip(labels, cells["line"].to_list(), strict=True))
