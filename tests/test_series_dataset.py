"""Ingest's series table as a hive-partitioned dataset: a file per series and time chunk, read
back as one table by polars (hive keys) and by the stages (no hive columns), checked by sha256."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest
from ingest_helpers import dataset_files, ingest, read_series, write_files
from ood_plant import make_ingest_dir, plant_frame, write_ingest_dir

from tests.conftest import run_tsfm
from tsfm_cli.errors import BadInputError
from tsfm_cli.ingest import IngestConfig, run_ingest
from tsfm_cli.ood import OodConfig, run_ood_split
from tsfm_cli.recipe import build_config, load_section
from tsfm_cli.schema import SERIES_COLUMNS
from tsfm_cli.series_dataset import (
    auto_granularity,
    chunk_expr,
    chunk_runs,
    open_series,
    ordered,
    parse_name,
    partition_name,
)
from tsfm_cli.stagedir import StageWriter, open_stage

ODD = ["plain", "with space", "a/b/c", "100%", "%2F", "Temperatür/°C", "日本", "x+y=z?&#"]


def _csv(minutes: int, start: str = "2024-01-30T22:00:00Z") -> str:
    t0 = dt.datetime.fromisoformat(start.replace("Z", "+00:00"))
    rows = [
        f"{(t0 + dt.timedelta(minutes=i)).strftime('%Y-%m-%dT%H:%M:%SZ')},{i % 17},{i % 5}"
        for i in range(minutes)
    ]
    return "timestamp,temp,flow\n" + "\n".join(rows) + "\n"


def test_layout_one_file_per_series_and_chunk_with_manifest_rows(tmp_path):
    """Three days of minute data across a month boundary, by day: a file per series and UTC day,
    each listed in the manifest with its rows, which add up to the points."""
    summary, series, _, _ = ingest(tmp_path, {"m.csv": _csv(3 * 1440)}, partition="day")
    out = tmp_path / "clean"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["schema_version"] == 2 and manifest["config"]["partition"] == "day"
    names = [n for n in manifest["outputs"] if n.startswith("series/")]
    days = ["2024-01-30", "2024-01-31", "2024-02-01", "2024-02-02"]
    expected = sorted(
        partition_name(s, dt.date.fromisoformat(d)) for s in ("m/flow", "m/temp") for d in days
    )
    assert sorted(names) == expected
    assert summary["partition"] == "day" and summary["partitions"] == len(expected) == 8
    rows = {n: manifest["outputs"][n]["rows"] for n in names}
    assert sum(rows.values()) == summary["points"] == series.height
    assert rows[partition_name("m/temp", dt.date(2024, 1, 30))] == 120  # 22:00 to midnight
    for name in names:  # every file: one series, one UTC day, every column of the table
        part = pl.read_parquet(out / name)
        series_id, chunk = parse_name(name)
        assert part["series_id"].unique().to_list() == [series_id]
        assert part["timestamp"].dt.date().unique().to_list() == [dt.date.fromisoformat(chunk)]
        assert set(SERIES_COLUMNS) <= set(part.columns) and part.height == rows[name]


def test_hive_keys_read_by_polars_as_one_table(tmp_path):
    _, series, _, _ = ingest(tmp_path, {"m.csv": _csv(2 * 1440)}, partition="day")
    out = tmp_path / "clean"
    hive = pl.scan_parquet(out / "series", hive_partitioning=True).collect()
    assert {"series", "chunk"} <= set(hive.columns)
    assert hive.schema["chunk"] == pl.Date
    assert (hive["series"] == hive["series_id"]).all()
    assert (hive["chunk"] == hive["timestamp"].dt.date()).all()
    by_key = hive.drop("series", "chunk").sort("series_id", "timestamp")
    assert by_key.equals(series.sort("series_id", "timestamp"))
    # the stages' reader: the same table, in table order, without hive columns
    assert series.columns == by_key.columns
    assert series.equals(series.sort("series_id", "timestamp"))


def test_odd_series_ids_are_encoded_and_read_back(tmp_path):
    frame = pl.concat(
        [
            plant_frame(lines=1, machines=1, sensors=("s",), points=50, short=None).with_columns(
                series_id=pl.lit(name), sensor=pl.lit(name)
            )
            for name in ODD
        ]
    ).sort("series_id", "timestamp")
    clean = write_ingest_dir(tmp_path / "clean", frame)
    files = dataset_files(clean)
    assert len(files) == len(ODD)
    for path in files:  # one folder level per key: a `/` in an id is not a folder
        rel = path.relative_to(clean).parts
        assert len(rel) == 4 and rel[1].startswith("series=") and rel[2].startswith("chunk=")
    assert sorted(parse_name(p.relative_to(clean).as_posix())[0] for p in files) == sorted(ODD)
    assert read_series(clean).equals(frame)  # table order: ids sorted as polars sorts them
    hive = pl.scan_parquet(clean / "series", hive_partitioning=True).collect()
    assert sorted(hive["series"].unique().to_list()) == sorted(ODD)
    assert (hive["series"] == hive["series_id"]).all()


def test_ordered_sorts_by_decoded_id_then_time():
    ids = ["b", "a b", "a/b", "a%", "é", "a", ""]
    chunks = [dt.date(2024, 2, 1), dt.date(2024, 1, 1)]
    names = [partition_name(s, c) for s in ids for c in chunks] + ["report.parquet"]
    keys = [parse_name(n) for n in ordered(names)]
    assert keys == sorted((s, c.isoformat()) for s in ids for c in chunks)
    assert [k[0] for k in keys[::2]] == pl.Series(ids).sort().to_list()  # polars' order


@pytest.mark.parametrize(
    ("freq_s", "expected"),
    [(1, "day"), (2, "week"), (12, "week"), (13, "month"), (60, "month"), (3600, "month")],
)
def test_auto_granularity_by_points_per_chunk(freq_s, expected):
    assert auto_granularity(freq_s) == expected


def test_auto_uses_the_smallest_step_of_the_dataset(tmp_path):
    """A 1-s series next to a 1-min one: days, for every series (the dataset's smallest step)."""
    fast = "timestamp,fast\n" + "".join(
        f"2024-01-01T00:{i // 60:02d}:{i % 60:02d}Z,{i % 7}\n" for i in range(600)
    )
    summary, series, _, _ = ingest(tmp_path, {"slow.csv": _csv(120), "fast.csv": fast})
    assert summary["partition"] == "day"
    assert set(series["freq_s"].unique().to_list()) == {1, 60}
    summary, _, _, _ = ingest(tmp_path / "b", {"slow.csv": _csv(120)})
    assert summary["partition"] == "month"


def test_partition_is_a_validated_recipe_key(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("ingest:\n  partition: fortnight\n")
    values, source = load_section(recipe, "ingest")
    with pytest.raises(BadInputError, match="partition"):
        build_config(IngestConfig, values, source)
    recipe.write_text("ingest:\n  partition: week\n")
    values, source = load_section(recipe, "ingest")
    assert build_config(IngestConfig, values, source).partition == "week"


def test_batches_give_the_files_of_one_batch(tmp_path, monkeypatch):
    """auto without `freq` over several batches: the grids wait until the smallest step is
    known, then every batch is written with that chunk; the same files as one batch."""
    from tsfm_cli.ingest import stage

    src = write_files(
        tmp_path / "src", {"a.csv": _csv(2 * 1440), "b.csv": _csv(1440, "2024-02-05T00:00:00Z")}
    )
    one = run_ingest([src], tmp_path / "one", IngestConfig())
    monkeypatch.setattr(stage, "BATCH_READINGS", 10)
    many = run_ingest([src], tmp_path / "many", IngestConfig())
    assert many["partitions"] == one["partitions"] and many["partition"] == one["partition"]
    names = [p.relative_to(tmp_path / "one") for p in dataset_files(tmp_path / "one")]
    assert names == [p.relative_to(tmp_path / "many") for p in dataset_files(tmp_path / "many")]
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "many" / name).read_bytes()
    assert not (tmp_path / "many" / "_work").exists()


def test_a_damaged_partition_is_named_by_the_input_check(tmp_path):
    clean = make_ingest_dir(tmp_path / "clean")
    upstream = open_stage(clean, "ingest")
    files = dataset_files(clean)
    assert len(files) > 2 and len(open_series(upstream).files) == len(files)
    victim = files[len(files) // 2]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 1
    victim.write_bytes(bytes(data))
    with pytest.raises(BadInputError, match="changed or damaged") as info:
        open_series(open_stage(clean, "ingest"))
    assert str(victim) in str(info.value)
    with pytest.raises(BadInputError, match="changed or damaged"):
        run_ood_split(clean, tmp_path / "splits", OodConfig(families=["ramp"]))
    assert not (tmp_path / "splits").exists()


def test_a_missing_partition_is_named(tmp_path):
    clean = make_ingest_dir(tmp_path / "clean")
    victim = dataset_files(clean)[0]
    victim.unlink()
    result = run_tsfm("ood-split", clean, "-o", tmp_path / "splits")
    assert result.returncode == 2 and "missing although manifest.json lists it" in result.stderr
    assert victim.relative_to(clean).as_posix() in result.stderr


def test_the_dataset_fingerprint_follows_its_content(tmp_path):
    """ood-split records one hash for all files: a change in any file is a new input."""
    a = open_stage(make_ingest_dir(tmp_path / "a"), "ingest").describe("series/")
    b = open_stage(make_ingest_dir(tmp_path / "b"), "ingest").describe("series/")
    c = open_stage(make_ingest_dir(tmp_path / "c", seed=1), "ingest").describe("series/")
    assert a["content"] == b["content"] and a["content"] != c["content"]
    assert list(a["content"]) == ["series/"]


def test_a_schema_version_1_directory_is_read_as_one_file(tmp_path):
    """An ingest folder from before the dataset (one series.parquet) still splits the same."""
    frame = plant_frame()
    old = tmp_path / "old"
    with StageWriter(old, "ingest", config={}, inputs=[]) as writer:
        writer.write_parquet("series.parquet", frame)
        writer.commit(summary={})
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["schema_version"] = 1
    (old / "manifest.json").write_text(json.dumps(manifest))
    new = write_ingest_dir(tmp_path / "new", frame)
    assert read_series(old).equals(read_series(new))
    cfg = OodConfig(families=["ramp"], horizons=[32])
    run_ood_split(old, tmp_path / "s_old", cfg)
    run_ood_split(new, tmp_path / "s_new", cfg)
    for name in ("train.parquet", "eval.parquet", "scenarios.parquet"):
        a = pl.read_parquet(tmp_path / "s_old" / name)
        assert a.height > 0 and a.equals(pl.read_parquet(tmp_path / "s_new" / name)), name


def test_a_series_id_too_long_for_a_file_name_is_one_clear_error(tmp_path):
    name = "a" * 300  # a mangled header: 300 bytes, more than a folder name may hold
    with pytest.raises(BadInputError, match="more than a file name may hold") as info:
        ingest(tmp_path, {"m.csv": _csv(10).replace("temp", name)})
    assert "\n" not in str(info.value) and "exclude_sensors" in str(info.value)
    assert not (tmp_path / "clean").exists()


@pytest.mark.parametrize("granularity", ["day", "week", "month"])
def test_chunk_runs_cut_where_chunk_expr_changes(granularity):
    """The writer's runs (binary search per series) against polars' truncation row by row:
    every 5 hours from 20 January to 12 April (a leap day), three series, one of a single row."""
    start = dt.datetime(2024, 1, 20, 7, tzinfo=dt.timezone.utc)
    times = [start + dt.timedelta(hours=5 * i) for i in range(400)]
    frame = pl.DataFrame(
        {
            "_sid": [0] * 400 + [1] + [2] * 400,
            "timestamp": [*times, start, *times],
        }
    ).with_columns(pl.col("timestamp").cast(pl.Datetime("us", "UTC")))
    runs = chunk_runs(frame, granularity, "_sid")
    expected = (
        frame.with_row_index("row")
        .with_columns(chunk=chunk_expr(granularity))
        .group_by("_sid", "chunk", maintain_order=True)
        .agg(offset=pl.col("row").min(), length=pl.len())
    )
    assert runs == [tuple(r) for r in expected.iter_rows()]
    starts = {r[1] for r in runs}
    if granularity == "week":
        assert all(d.weekday() == 0 for d in starts)
    if granularity == "month":
        assert starts == {dt.date(2024, m, 1) for m in (1, 2, 3, 4)}
