"""One test per messy-export quirk: the values, timestamps, mask and flags that come out."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from tests.ingest_helpers import has, ingest, minutes, one, wide_csv
from tsfm_cli.errors import BadInputError
from tsfm_cli.schema import Flag

UTC = dt.timezone.utc


def ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- encodings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "encoding, bom", [("utf-8", b""), ("utf-8", b"\xef\xbb\xbf"), ("cp1252", b""), ("latin-1", b"")]
)
def test_encodings_and_unit_in_header(tmp_path, encoding, bom):
    text = "Zeit;Temperatur [°C];Druck\n" + "".join(
        f"{t};{20 + i},5;{i}\n" for i, t in enumerate(minutes(4))
    )
    _, series, _, report = ingest(tmp_path, {"m1.csv": bom + text.encode(encoding)})
    temp = one(series, "temperatur")
    assert temp["value"].to_list() == [20.5, 21.5, 22.5, 23.5]
    assert temp["timestamp"][0] == ts("2024-05-06 08:00")
    assert report.filter(pl.col("sensor") == "temperatur")["unit"].item() == "°C"
    assert set(series["sensor"]) == {"temperatur", "druck"}  # no BOM in a name


# --- delimiters, decimal comma, thousands --------------------------------------------------


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_delimiters(tmp_path, sep):
    text = wide_csv([1.5, 2.5, 3.5], sep=sep, header="timestamp,temp,flow").replace(
        "\n", f"{sep}7\n"
    )
    text = text.replace(f"flow{sep}7", "flow")
    _, series, _, _ = ingest(tmp_path, {"m.csv": text})
    assert one(series, "temp")["value"].to_list() == [1.5, 2.5, 3.5]
    assert one(series, "flow")["value"].to_list() == [7, 7, 7]


def test_decimal_comma_and_thousands_dot(tmp_path):
    text = "time;flow;temp\n" + "".join(
        f"{t};{v};{w}\n"
        for t, v, w in zip(
            minutes(3), ["1.234,5", "987,25", "12.000,0"], ["12,5", "-3,25", "0,0"], strict=False
        )
    )
    _, series, _, _ = ingest(tmp_path, {"m.csv": text})
    assert one(series, "flow")["value"].to_list() == [1234.5, 987.25, 12000.0]
    assert one(series, "temp")["value"].to_list() == [12.5, -3.25, 0.0]


def test_thousands_comma_with_tab(tmp_path):
    text = "time\tflow\n" + "".join(
        f"{t}\t{v}\n" for t, v in zip(minutes(3), ["1,234.5", "987.5", "12,000.0"], strict=False)
    )
    _, series, _, _ = ingest(tmp_path, {"m.tsv": text})
    assert one(series, "flow")["value"].to_list() == [1234.5, 987.5, 12000.0]


# --- preamble, units row, comments ---------------------------------------------------------


def test_preamble_units_row_and_comments(tmp_path):
    lines = [
        "Logger: PLC-7 line 3",
        "Export: 06.05.2024 10:00",
        "",
        "Zeit;Temperatur;Druck",
        ";°C;bar",
        "06.05.2024 08:00;20,5;1,5",
        "# maintenance: sensor recalibrated",
        "06.05.2024 08:01;21,0;1,6",
        "06.05.2024 08:02;21,5;1,7",
    ]
    summary, series, rejects, report = ingest(tmp_path, {"m.csv": "\n".join(lines) + "\n"})
    assert one(series, "druck")["value"].to_list() == pytest.approx([1.5, 1.6, 1.7])
    assert report.filter(pl.col("sensor") == "druck")["unit"].item() == "bar"
    reasons = dict(zip(rejects["line"].to_list(), rejects["reason"].to_list(), strict=True))
    assert reasons == {1: "preamble line", 2: "preamble line", 7: "comment line"}
    assert summary["lines_data"] == 4 and summary["lines_used"] == 3
    assert summary["lines_rejected"] == 1 and summary["lines_unaccounted"] == 0


def test_a_first_data_line_of_junk_is_data_not_the_header(tmp_path):
    """A data line whose values are all junk looks like a header row to the sniffer, but it
    starts with a time: it stays a data line (accounted, its cells rejected), and the header
    keeps the names. (It used to be taken as the header: a data line silently gone.)"""
    lines = ["timestamp,a,b,c", "2024-05-06 08:00:00,,0x1F,:", "2024-05-06 08:01:00,0,0,0"]
    summary, series, rejects, _ = ingest(tmp_path, {"m.csv": "\n".join(lines) + "\n"})
    assert set(series["sensor"]) == {"a", "b", "c"}
    assert summary["lines_data"] == 2 and summary["lines_unaccounted"] == 0
    assert 1 not in rejects["line"].to_list()  # the header is not a preamble line
    first = series.filter(pl.col("timestamp") == ts("2024-05-06 08:00"))
    assert first.height == 3 and not first["observed"].any()


# --- layouts -----------------------------------------------------------------------------


def test_long_layout(tmp_path):
    rows = ["timestamp,tag,value"]
    for i, t in enumerate(minutes(3)):
        rows += [f"{t},Temp,{20 + i}", f"{t},Motor Current,{5 * i}"]
    _, series, _, _ = ingest(tmp_path, {"line1/machine2.csv": "\n".join(rows) + "\n"})
    assert set(series["series_id"]) == {"line1/machine2/temp", "line1/machine2/motor_current"}
    assert one(series, "motor_current")["value"].to_list() == [0, 5, 10]
    assert series["line"].unique().to_list() == ["line1"]
    assert series["machine"].unique().to_list() == ["machine2"]


# --- timestamps --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header, stamps, first, second",
    [
        ("timestamp", ["2024-05-06T10:00:00+02:00", "2024-05-06T08:01:00Z"], "08:00", "08:01"),
        ("time", ["06.05.2024 08:00", "06.05.2024 08:01"], "08:00", "08:01"),
        ("time", ["06.05.2024 08:00:00", "06.05.2024 08:01:00"], "08:00", "08:01"),
        ("time", ["05/06/2024 12:59 PM", "05/06/2024 01:00 PM"], "12:59", "13:00"),
        ("time", ["05/06/2024 11:00:00 AM", "05/06/2024 11:01:00 AM"], "11:00", "11:01"),
        ("epoch", ["1714982400", "1714982460"], "08:00", "08:01"),
        ("ts", ["1714982400000", "1714982460000"], "08:00", "08:01"),
    ],
)
def test_timestamp_formats(tmp_path, header, stamps, first, second):
    text = f"{header},temp\n" + "".join(f"{s},{i}\n" for i, s in enumerate(stamps))
    _, series, _, _ = ingest(tmp_path, {"m.csv": text})
    got = one(series, "temp")["timestamp"].to_list()
    assert got == [ts(f"2024-05-06 {first}"), ts(f"2024-05-06 {second}")]


def test_separate_date_and_time_columns(tmp_path):
    text = "Date;Time;temp\n2024-05-06;08:00:00;1\n2024-05-06;08:01:00;2\n"
    _, series, _, _ = ingest(tmp_path, {"m.csv": text})
    assert one(series, "temp")["timestamp"].to_list() == [
        ts("2024-05-06 08:00"),
        ts("2024-05-06 08:01"),
    ]


def test_dst_fall_back_kept_in_order_and_flagged(tmp_path):
    # local Berlin times 30 min apart: 01:30, 02:00, 02:30 CEST, then 02:00, 02:30 CET, 03:00
    local = ["01:30", "02:00", "02:30", "02:00", "02:30", "03:00"]
    text = "time;temp\n" + "".join(f"27.10.2024 {t};{i}\n" for i, t in enumerate(local))
    _, series, _, _ = ingest(tmp_path, {"m.csv": text}, timezone="Europe/Berlin")
    temp = one(series, "temp")
    assert temp["value"].to_list() == [0, 1, 2, 3, 4, 5]  # order of appearance kept
    assert temp["timestamp"].to_list() == [
        ts("2024-10-26 23:30"),
        ts("2024-10-27 00:00"),
        ts("2024-10-27 00:30"),
        ts("2024-10-27 01:00"),
        ts("2024-10-27 01:30"),
        ts("2024-10-27 02:00"),
    ]
    assert has(temp["flags"], Flag.TIME_AMBIGUOUS) == [False, True, True, True, True, False]
    assert temp["observed"].all()


def test_dst_spring_forward_gap(tmp_path):
    # the logger jumps 01:45 → 03:00; a reading stamped 02:30 (clock not yet moved) is flagged
    local = ["01:30", "01:45", "02:30", "03:00", "03:15"]
    text = "time,temp\n" + "".join(f"2024-03-31 {t},{i}\n" for i, t in enumerate(local))
    _, series, _, _ = ingest(tmp_path, {"m.csv": text}, timezone="Europe/Berlin", freq="15m")
    temp = one(series, "temp")
    assert temp["timestamp"].to_list() == [
        ts("2024-03-31 00:30"),
        ts("2024-03-31 00:45"),
        ts("2024-03-31 01:00"),
        ts("2024-03-31 01:15"),
        ts("2024-03-31 01:30"),
    ]
    # 02:30 read with the winter offset is 01:30 UTC; 01:00 and 01:15 UTC hold 03:00 and 03:15
    assert temp["value"].to_list() == [0, 1, 3, 4, 2]
    assert has(temp["flags"], Flag.TIME_AMBIGUOUS) == [False, False, False, False, True]


# --- sentinels and junk --------------------------------------------------------------------

SENTINELS = ["-999", "-9999", "9999", "NaN", "N/A", "#N/A", "null", "-", "--", "ERR", "#VALUE!"]


def test_sentinels_junk_and_empty_cells(tmp_path):
    cells = ["1.5", *SENTINELS, "warming up", "", "2.5"]
    _, series, rejects, _ = ingest(tmp_path, {"m.csv": wide_csv(cells)})
    temp = one(series, "temp")
    n = len(SENTINELS)
    assert temp["value"].to_list() == [1.5] + [None] * (n + 2) + [2.5]
    assert temp["observed"].to_list() == [True] + [False] * (n + 2) + [True]
    assert has(temp["flags"], Flag.SENTINEL) == [False] + [True] * n + [False, False, False]
    assert has(temp["flags"], Flag.UNPARSEABLE)[n + 1] and has(temp["flags"], Flag.MISSING)[n + 2]
    by_raw = dict(zip(rejects["raw"].to_list(), rejects["reason"].to_list(), strict=True))
    assert {by_raw[s] for s in SENTINELS} == {"sentinel"}
    assert by_raw["warming up"] == "unparseable value"
    assert "" not in by_raw  # an empty cell is a missing reading, not a reject


def test_configurable_sentinels(tmp_path):
    _, series, _, _ = ingest(
        tmp_path, {"m.csv": wide_csv(["1", "-1", "OFF", "2"])}, extra_sentinels=["-1", "off"]
    )
    assert has(one(series, "temp")["flags"], Flag.SENTINEL) == [False, True, True, False]


# --- duplicates, order, jitter, gaps -------------------------------------------------------


def test_identical_duplicates_become_one(tmp_path):
    t = minutes(3)
    text = wide_csv([1, 2, 2, 3], times=[t[0], t[1], t[1], t[2]])
    summary, series, rejects, _ = ingest(tmp_path, {"m.csv": text})
    assert one(series, "temp")["value"].to_list() == [1, 2, 3]
    assert not any(has(series["flags"], Flag.DUPLICATE_CONFLICT))
    assert rejects.filter(pl.col("reason") == "duplicate timestamp")["line"].to_list() == [4]
    assert summary["lines_unaccounted"] == 0


@pytest.mark.parametrize("policy, kept", [("first", 2.0), ("last", 4.0), ("mean", 3.0)])
def test_conflicting_duplicates_follow_policy(tmp_path, policy, kept):
    t = minutes(3)
    text = wide_csv([1, 2, 4, 3], times=[t[0], t[1], t[1], t[2]])
    _, series, rejects, _ = ingest(tmp_path, {"m.csv": text}, duplicates=policy)
    temp = one(series, "temp")
    assert temp["value"].to_list() == [1, kept, 3]
    assert has(temp["flags"], Flag.DUPLICATE_CONFLICT) == [False, True, False]
    assert rejects["reason"].str.starts_with("duplicate_conflict").sum() == 1


def test_rows_out_of_order_are_sorted(tmp_path):
    t = minutes(4)
    text = wide_csv([3, 1, 4, 2], times=[t[2], t[0], t[3], t[1]])
    _, series, _, _ = ingest(tmp_path, {"m.csv": text})
    temp = one(series, "temp")
    assert temp["value"].to_list() == [1, 2, 3, 4]
    assert temp["timestamp"].is_sorted()


def test_jitter_snaps_to_grid_and_gaps_are_missing(tmp_path):
    times = ["2024-05-06 08:00:03", "2024-05-06 08:00:58", "2024-05-06 08:02:01",
             "2024-05-06 08:05:02", "2024-05-06 08:05:59"]  # fmt: skip
    _, series, _, report = ingest(tmp_path, {"m.csv": wide_csv([1, 2, 3, 4, 5], times=times)})
    temp = one(series, "temp")
    assert temp["freq_s"].unique().to_list() == [60]
    assert temp["timestamp"].to_list() == [ts(f"2024-05-06 08:0{i}") for i in range(7)]
    assert temp["value"].to_list() == [1, 2, 3, None, None, 4, 5]
    assert has(temp["flags"], Flag.MISSING) == [False] * 3 + [True, True] + [False] * 2
    assert report["missing_frac"].item() == pytest.approx(2 / 7)


def test_freq_from_recipe(tmp_path):
    _, series, _, _ = ingest(tmp_path, {"m.csv": wide_csv([1, 2, 3])}, freq="30s")
    assert one(series, "temp")["value"].to_list() == [1, None, 2, None, 3]


# --- faults --------------------------------------------------------------------------------


def test_physical_range_by_pattern(tmp_path):
    text = "time,temp_in,temp_out,flow\n" + "".join(
        f"{t},{a},{b},{c}\n"
        for t, a, b, c in zip(minutes(3), [20, 500, 21], [-80, 30, 31], [5, 6, 7], strict=False)
    )
    _, series, _, _ = ingest(tmp_path, {"m.csv": text}, ranges={"temp_*": [-20, 150]})
    assert has(one(series, "temp_in")["flags"], Flag.OUT_OF_RANGE) == [False, True, False]
    assert has(one(series, "temp_out")["flags"], Flag.OUT_OF_RANGE) == [True, False, False]
    assert one(series, "temp_in")["observed"].to_list() == [True, False, True]
    assert one(series, "temp_in")["value"].to_list() == [20, None, 21]
    assert not any(has(one(series, "flow")["flags"], Flag.OUT_OF_RANGE))


def test_spike_detected_without_false_alarms(tmp_path):
    import math

    values = [round(50 + 10 * math.sin(i / 10), 3) for i in range(200)]
    values[77] = 95.0
    _, series, _, _ = ingest(tmp_path, {"m.csv": wide_csv(values, times=minutes(200))})
    temp = one(series, "temp")
    spikes = [i for i, hit in enumerate(has(temp["flags"], Flag.SPIKE)) if hit]
    assert spikes == [77]
    assert temp["observed"][77] is False and temp["value"][77] is None


def test_stuck_sensor(tmp_path):
    values = [float(i % 7) for i in range(40)]
    values[10:25] = [3.0] * 15
    _, series, _, _ = ingest(
        tmp_path, {"m.csv": wide_csv(values, times=minutes(40))}, stuck_points=10, spike_threshold=0
    )
    stuck = has(one(series, "temp")["flags"], Flag.STUCK)
    assert stuck == [False] * 10 + [True] * 15 + [False] * 15
    assert one(series, "temp")["observed"].sum() == 25


def test_faults_flagged_but_kept_when_not_masked(tmp_path):
    _, series, _, _ = ingest(
        tmp_path, {"m.csv": wide_csv([1, 900, 2])}, ranges={"temp": [0, 100]}, mask_faults=[]
    )
    temp = one(series, "temp")
    assert temp["value"].to_list() == [1, 900, 2] and temp["observed"].all()
    assert has(temp["flags"], Flag.OUT_OF_RANGE) == [False, True, False]


# --- files still being written, gzip, headerless -------------------------------------------


def test_truncated_last_line_is_rejected_with_line_number(tmp_path):
    text = "time;temp;flow\n06.05.2024 08:00;1;2\n06.05.2024 08:01;3;4\n06.05.2024 08:0"
    summary, series, rejects, _ = ingest(tmp_path, {"m.csv": text})
    assert one(series, "temp")["value"].to_list() == [1, 3]
    row = rejects.row(0, named=True)
    assert row["line"] == 4 and row["reason"].startswith("truncated last line")
    assert row["raw"] == "06.05.2024 08:0"
    assert summary["lines_data"] == 3 and summary["lines_unaccounted"] == 0


def test_ragged_line_in_the_middle(tmp_path):
    text = (
        "time,temp,flow\n2024-05-06 08:00,1,2\n2024-05-06 08:01,3\n2024-05-06 08:02,5,6,\n"
        "2024-05-06 08:03,7,8\n2024-05-06 08:04,9,10\n"
    )
    _, series, rejects, _ = ingest(tmp_path, {"m.csv": text})
    assert one(series, "temp")["value"].to_list() == [1, None, 5, 7, 9]  # trailing ',' is fine
    assert rejects.select("line", "reason").row(0) == (3, "wrong number of fields (2 of 3)")


def test_gzip(tmp_path):
    _, series, _, _ = ingest(tmp_path, {"m.csv.gz": wide_csv([1.25, 2.5])})
    assert one(series, "temp")["value"].to_list() == [1.25, 2.5]


def test_headerless_whitespace_needs_start_and_interval(tmp_path):
    text = " 1.0e+00  2.5  \n 2.0e+00  3.5  \n 3.0e+00  4.5  \n"
    _, series, _, _ = ingest(
        tmp_path, {"d00.dat": text}, start="2024-05-06T08:00:00Z", interval="3m",
        columns=["a", "b"],
    )  # fmt: skip
    b = one(series, "b")
    assert b["value"].to_list() == [2.5, 3.5, 4.5]
    assert b["timestamp"].to_list() == [ts("2024-05-06 08:00"), ts("2024-05-06 08:03"),
                                        ts("2024-05-06 08:06")]  # fmt: skip
    assert b["freq_s"][0] == 180
    with pytest.raises(BadInputError, match=r"d00\.dat: no timestamp column.*start and interval"):
        ingest(tmp_path / "again", {"d00.dat": text})


# --- gap filling ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, expected",
    [
        ("ffill", [1, 1, 1, 4, None, None, None, None, 9]),
        ("linear", [1, 2, 3, 4, None, None, None, None, 9]),
    ],
)
def test_gap_filling_never_changes_observed(tmp_path, method, expected):
    values = [1, "", "", 4, "", "", "", "", 9]
    _, series, _, _ = ingest(
        tmp_path, {"m.csv": wide_csv(values, times=minutes(9))}, fill=method, max_gap=3
    )
    temp = one(series, "temp")
    assert temp["value"].to_list() == expected
    assert temp["observed"].to_list() == [True, False, False, True] + [False] * 4 + [True]
    assert has(temp["flags"], Flag.FILLED) == [False, True, True] + [False] * 6


# --- group keys and per-file settings --------------------------------------------------------


def test_group_keys_from_path_pattern_and_per_file_settings(tmp_path):
    sources = {
        "plantA/press-07/2024.csv": wide_csv([1, 2, 3]),
        "plantA/press-08/2024.csv": wide_csv([4, 5, 6], times=minutes(3, "2024-05-06 10:00")),
    }
    _, series, _, _ = ingest(
        tmp_path,
        sources,
        group_pattern=r"(?P<site>plant\w)/(?P<machine>press-\d+)",
        files={"*press-08/*": {"timezone": "Europe/Berlin"}},
    )
    assert sorted(series["series_id"].unique()) == [
        "plantA/press-07/temp",
        "plantA/press-08/temp",
    ]
    assert set(series.columns) >= {"site", "machine"}
    first = series.group_by("machine").agg(pl.col("timestamp").min()).sort("machine")
    assert first["timestamp"].to_list() == [ts("2024-05-06 08:00"), ts("2024-05-06 08:00")]


def test_per_file_settings_reject_non_parse_keys(tmp_path):
    from tsfm_cli.ingest.config import IngestConfig, validate

    config = IngestConfig(files={"*.csv": {"fill": "linear"}})
    with pytest.raises(BadInputError, match="'fill', which is not a per-file setting"):
        validate(config, lambda *keys: f"r.yaml: key '{keys}'")


def test_label_columns_are_left_out_by_glob(tmp_path):
    """SKAB-style exports carry `anomaly`/`changepoint` label columns next to the sensors; they
    are not signals to forecast (constant 0, then 1). `exclude_sensors` leaves them out."""
    times = minutes(40)
    rows = ["datetime;Current;Volume Flow RateRMS;anomaly;changepoint"]
    rows += [
        f"{t};{1 + i % 3};{30 + i % 5};{float(i > 30)};{float(i == 31)}"
        for i, t in enumerate(times)
    ]
    source = {"valve1/0.csv": "\r\n".join(rows) + "\r\n"}
    summary, series, _, report = ingest(tmp_path, source, exclude_sensors=["ANOMALY", "change*"])
    assert set(series["sensor"]) == {"current", "volume_flow_raterms"}
    assert report.height == 2 and summary["lines_unaccounted"] == 0
    assert one(series, "current")["observed"].all()
