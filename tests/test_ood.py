"""ood-split as a library: artifacts, windows at each horizon, no leakage, determinism, shift."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import polars as pl
import pytest
from ingest_helpers import read_series
from ood_plant import make_ingest_dir, plant_frame, write_ingest_dir

from tsfm_cli.drift import FAMILIES
from tsfm_cli.errors import BadInputError
from tsfm_cli.ood import OodConfig, run_ood_split
from tsfm_cli.ood.windows import EVAL_SCHEMA
from tsfm_cli.recipe import RecipeSource

CUSTOM = {"late": "hour(timestamp) >= 12"}  # half a day: room for 128-point targets


def _config(**kwargs) -> OodConfig:
    return OodConfig(heldout=["machine=m3"], custom=dict(CUSTOM), **kwargs)


@pytest.fixture(scope="module")
def plant(tmp_path_factory):
    return make_ingest_dir(tmp_path_factory.mktemp("plant") / "clean")


@pytest.fixture(scope="module")
def split(plant):
    out = plant.parent / "splits"
    summary = run_ood_split(plant, out, _config())
    return out, summary


def _target_points(frame: pl.DataFrame) -> pl.DataFrame:
    """One row per target time point of every window: scenario, series_id, timestamp."""
    return (
        frame.select(
            "scenario",
            "series_id",
            "target_start",
            "freq_s",
            pl.int_ranges(0, pl.col("horizon")).alias("k"),
        )
        .explode("k")
        .select(
            "scenario",
            "series_id",
            (pl.col("target_start") + pl.duration(seconds=pl.col("k") * pl.col("freq_s"))).alias(
                "timestamp"
            ),
        )
    )


def test_artifacts_and_contract_columns(split):
    out, summary = split
    names = {p.name for p in out.iterdir()}
    assert {"manifest.json", "train.parquet", "eval.parquet", "scenarios.parquet"} <= names
    assert "scenarios.png" in names and (out / "scenarios.png").stat().st_size > 1000
    evals = pl.read_parquet(out / "eval.parquet")
    # ingest's group keys travel with every window (train reports per line / machine)
    assert dict(evals.schema) == {**EVAL_SCHEMA, "line": pl.String, "machine": pl.String}
    assert evals.filter(pl.col("series_id") == "line2/m1/pressure")["line"].unique().to_list() == [
        "line2"
    ]
    series = read_series(out.parent / "clean")
    train = pl.read_parquet(out / "train.parquet")
    assert train.schema == series.schema
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "ood-split"
    assert manifest["config"]["context_length"] == 512
    assert manifest["config"]["horizons"] == [32, 128]
    assert manifest["resolved"]["patch_friendly"] is True
    assert manifest["outputs"]["eval.parquet"]["rows"] == evals.height == summary["eval_windows"]
    scenarios = pl.read_parquet(out / "scenarios.parquet")
    for column in ("scenario", "family", "kind", "severity", "params", "n_windows", "ks"):
        assert column in scenarios.columns
    assert all(isinstance(json.loads(p), dict) for p in scenarios["params"])


def test_scenario_names(split):
    out, _ = split
    scenarios = pl.read_parquet(out / "scenarios.parquet")
    synthetic = [f"{f}:{s}" for f in FAMILIES for s in ("1", "2", "3")]
    # validation windows come last (test windows keep their ids whatever val_fraction is)
    expected = ["id", "future", "heldout:machine=m3", "custom:late", *synthetic, "val"]
    assert scenarios["scenario"].to_list() == expected
    kinds = dict(zip(scenarios["scenario"], scenarios["kind"], strict=True))
    assert (
        kinds["val"] == "val"
        and kinds["id"] == "id"
        and kinds["future"] == "natural"
        and kinds["level_shift:2"] == ("synthetic")
    )
    evals = pl.read_parquet(out / "eval.parquet")
    assert set(evals["scenario"].unique()) == set(expected)
    counts = evals.group_by("scenario").len()
    merged = scenarios.join(counts, on="scenario")
    assert (merged["n_windows"] == merged["len"]).all()
    assert (scenarios["n_windows"] > 0).all()


def test_windows_at_each_horizon_have_the_stated_lengths(split):
    out, _ = split
    evals = pl.read_parquet(out / "eval.parquet")
    assert sorted(evals["horizon"].unique().to_list()) == [32, 128]
    lengths = evals.select(
        "horizon",
        pl.col("context").list.len().alias("c"),
        pl.col("context_observed").list.len().alias("co"),
        pl.col("target").list.len().alias("t"),
        pl.col("target_observed").list.len().alias("to"),
    )
    assert (lengths["c"] == 512).all() and (lengths["co"] == 512).all()
    assert (lengths["t"] == lengths["horizon"]).all() and (
        lengths["to"] == lengths["horizon"]
    ).all()
    # every scenario has windows at every horizon, and at most max_windows per series
    per = evals.group_by("scenario", "horizon", "series_id").len()
    assert per["len"].max() <= 64
    assert per.group_by("scenario").agg(pl.col("horizon").n_unique())["horizon"].min() == 2


def test_windows_hold_the_series_values(split):
    out, _ = split
    series = read_series(out.parent / "clean")
    evals = pl.read_parquet(out / "eval.parquet").filter(pl.col("family") != "level_shift")
    sample = evals.filter(pl.col("family").is_in(["id", "future", "heldout", "custom"]))[::37]
    for row in sample.iter_rows(named=True):
        freq = dt.timedelta(seconds=row["freq_s"])
        start = row["target_start"] - 512 * freq
        end = row["target_start"] + row["horizon"] * freq
        part = series.filter(
            (pl.col("series_id") == row["series_id"])
            & (pl.col("timestamp") >= start)
            & (pl.col("timestamp") < end)
        )
        assert part.height == 512 + row["horizon"]
        assert part["observed"].to_list() == row["context_observed"] + row["target_observed"]
        expected = part.select(pl.when("observed").then("value"))["value"].to_list()
        assert expected == row["context"] + row["target"]


def test_no_target_overlaps_a_training_point(split):
    out, _ = split
    train = pl.read_parquet(out / "train.parquet")
    points = _target_points(pl.read_parquet(out / "eval.parquet"))
    assert points.height > 10_000
    # no observed training point is ever a target, in any scenario
    observed = train.filter("observed").select("series_id", "timestamp")
    assert points.join(observed, on=["series_id", "timestamp"]).height == 0
    # and outside custom splits (whose rows stay in train.parquet, hidden) no training row at all
    strict = points.filter(~pl.col("scenario").str.starts_with("custom:"))
    assert strict.join(
        train.select("series_id", "timestamp"), on=["series_id", "timestamp"]
    ).is_empty()


def test_heldout_group_never_in_train(split, plant):
    out, summary = split
    train = pl.read_parquet(out / "train.parquet")
    assert "m3" not in train["machine"].unique().to_list()
    assert train.height == summary["train_rows"] > 0
    evals = pl.read_parquet(out / "eval.parquet")
    held = evals.filter(pl.col("scenario") == "heldout:machine=m3")["series_id"].unique()
    assert held.len() == 4 and all("/m3/" in s for s in held)
    others = evals.filter(pl.col("scenario") != "heldout:machine=m3")["series_id"].unique()
    assert not any("/m3/" in s for s in others)


def test_split_points_place_id_and_future_targets(split):
    out, _ = split
    series = read_series(out.parent / "clean")
    span = series.group_by("series_id").agg(
        first=pl.col("timestamp").min(), last=pl.col("timestamp").max()
    )

    def at(fraction: float) -> pl.Expr:  # a fraction of each series' own time range
        return pl.col("first") + (pl.col("last") - pl.col("first")) * fraction

    evals = pl.read_parquet(out / "eval.parquet").join(span, on="series_id")
    ends = evals.with_columns(
        end=pl.col("target_start")
        + pl.duration(seconds=(pl.col("horizon") - 1) * pl.col("freq_s")),
        ctx=pl.col("target_start") - pl.duration(seconds=512 * pl.col("freq_s")),
    )
    ids = ends.filter(pl.col("scenario") == "id")
    assert (ids["target_start"] >= ids.select(at(0.6)).to_series()).all()
    assert (ids["end"] < ids.select(at(0.75)).to_series()).all()
    future = ends.filter(pl.col("scenario") == "future")
    assert (future["target_start"] >= future.select(at(0.8)).to_series()).all()
    assert (future["ctx"] >= future.select(at(0.75)).to_series()).all()
    train = pl.read_parquet(out / "train.parquet").join(span, on="series_id")
    assert (train["timestamp"] < train.select(at(0.6)).to_series()).all()
    assert train["series_id"].n_unique() == 9  # 13 series minus the 4 held out (m3)


def test_custom_rows_are_hidden_in_train_and_targets_match(split):
    out, _ = split
    train = pl.read_parquet(out / "train.parquet")
    late = train.filter(pl.col("timestamp").dt.hour() >= 12)
    assert (
        late.height > 0
        and not late["observed"].any()
        and late["value"].null_count() == (late.height)
    )
    points = _target_points(pl.read_parquet(out / "eval.parquet"))
    custom = points.filter(pl.col("scenario") == "custom:late")
    assert custom.height > 0 and (custom["timestamp"].dt.hour() >= 12).all()


def test_short_series_skipped_and_reported(split):
    out, summary = split
    assert summary["series_too_short"] == 1 and summary["too_short_ids"] == ["line9/m1/flow"]
    evals = pl.read_parquet(out / "eval.parquet")
    assert "line9/m1/flow" not in evals["series_id"].to_list()


def test_synthetic_windows_keep_masks_honest(split):
    out, _ = split
    evals = pl.read_parquet(out / "eval.parquet")
    base = evals.filter(pl.col("scenario") == "id").select(
        pl.col("window_id").alias("base_window_id"),
        pl.col("context_observed").alias("bco"),
        pl.col("target_observed").alias("bto"),
        pl.col("context").alias("bc"),
    )
    synthetic = evals.filter(pl.col("severity") > 0).join(base, on="base_window_id")
    assert synthetic.height == evals.filter(pl.col("severity") > 0).height
    onset = 512 - 128
    drifted = synthetic.select(pl.concat_list("context_observed", "target_observed"))
    clean = synthetic.select(pl.concat_list("bco", "bto"))
    for d, c in zip(drifted.to_series(), clean.to_series(), strict=True):
        assert not (np.asarray(d) & ~np.asarray(c)).any()
    ctx = np.array(synthetic["context"].to_list(), dtype=np.float64)
    clean_ctx = np.array(synthetic["bc"].to_list(), dtype=np.float64)
    np.testing.assert_array_equal(ctx[:, :onset], clean_ctx[:, :onset])
    # each family is applied to the same clean windows (the drift is the only difference)
    sets = synthetic.group_by("scenario", "horizon").agg(pl.col("base_window_id").sort())
    assert (
        sets.group_by("horizon").agg(pl.col("base_window_id").n_unique())["base_window_id"].max()
        == 1
    )


PRIMARY = {
    "level_shift": "wasserstein",
    "ramp": "wasserstein",
    "gain_change": "wasserstein",
    "noise_increase": "ks_diff",
    "spikes": "wasserstein",
    "stuck_sensor": "ks_diff",
    "missing_bursts": "missing",
    "quantisation": "ks_diff",
    "time_warp": "ks_diff",
    "sampling_rate": "ks_diff",
}


def test_measured_shift_grows_with_severity(split):
    out, _ = split
    scenarios = pl.read_parquet(out / "scenarios.parquet").with_columns(
        missing=1 - pl.col("observed_frac")
    )
    assert set(PRIMARY) == set(FAMILIES)
    for family, measure in PRIMARY.items():
        values = scenarios.filter(pl.col("family") == family).sort("severity")[measure].to_list()
        assert values == sorted(values) and values[-1] > values[0], (family, measure, values)
    id_row = scenarios.filter(pl.col("scenario") == "id")
    strongest = scenarios.filter(pl.col("scenario") == "level_shift:3")
    assert id_row["ks"].item() < 0.1 < strongest["ks"].item()
    # against the clean ID windows, the same pool: zero for id, growing with severity
    assert id_row["ks_id"].item() == 0.0 and id_row["wasserstein_id"].item() == 0.0
    shifts = scenarios.filter(pl.col("family") == "level_shift").sort("severity")["ks_id"]
    assert shifts.is_sorted() and shifts[0] > 0.1


def test_deterministic_and_rerun_is_skipped(split, plant, tmp_path):
    out, _ = split
    again = run_ood_split(plant, tmp_path / "again", _config())
    for name in ("train.parquet", "eval.parquet", "scenarios.parquet"):
        assert pl.read_parquet(out / name).equals(pl.read_parquet(tmp_path / "again" / name)), name
    assert again["skipped"] is False
    assert run_ood_split(plant, tmp_path / "again", _config())["skipped"] is True
    other = run_ood_split(plant, tmp_path / "other", _config(seed=1, synthetic_windows=2))
    assert not pl.read_parquet(out / "eval.parquet").equals(
        pl.read_parquet(tmp_path / "other" / "eval.parquet")
    )
    assert other["eval_windows"] < again["eval_windows"]


def test_leave_one_group_out_picks_a_group_by_seed(plant, tmp_path):
    cfg = OodConfig(heldout=["line"], families=["level_shift"], horizons=[64])
    summary = run_ood_split(plant, tmp_path / "logo", cfg)
    assert summary["heldout"] in (["line=line1"], ["line=line2"], ["line=line9"])
    key = summary["heldout"][0].split("=")[1]
    train = pl.read_parquet(tmp_path / "logo" / "train.parquet")
    assert key not in train["line"].unique().to_list()


def test_onset_in_target_leaves_context_clean(plant, tmp_path):
    cfg = OodConfig(families=["level_shift"], severities=[2.0], onset="target", horizons=[32])
    run_ood_split(plant, tmp_path / "t", cfg)
    evals = pl.read_parquet(tmp_path / "t" / "eval.parquet")
    clean = evals.filter(pl.col("scenario") == "id").select(
        pl.col("window_id").alias("base_window_id"), pl.col("context").alias("clean")
    )
    drifted = evals.filter(pl.col("scenario") == "level_shift:2").join(clean, on="base_window_id")
    assert drifted.height > 0 and drifted["context"].equals(drifted["clean"], check_names=False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"families": ["meltdown"]}, "unknown drift family 'meltdown'"),
        ({"severities": [0.0, 1.0]}, "out of range"),
        ({"severities": [1.0, 50.0]}, "out of range"),
        ({"heldout": ["plant=p1"]}, "group key 'plant' is not a column"),
        ({"heldout": ["machine=m99"]}, "no series has machine=m99"),
        ({"custom": {"x": "nosuch > 1"}}, "unknown column(s) nosuch"),
        ({"horizons": [0]}, "horizons"),
        ({"id_start": 0.8, "train_end": 0.7}, "split points"),
        ({"train_end": "yesterday"}, "neither a fraction"),
        ({"context_length": 4000}, "no ID window fits"),
    ],
)
def test_bad_settings_are_one_line_errors_and_write_nothing(plant, tmp_path, kwargs, message):
    source = RecipeSource()
    with pytest.raises(BadInputError, match=None) as info:
        run_ood_split(plant, tmp_path / "bad", OodConfig(**kwargs), source=source)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "bad").exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.sample(fraction=1.0, shuffle=True, seed=1), "not sorted"),
        (lambda f: f.drop("freq_s"), "missing column(s) freq_s"),
    ],
)
def test_series_breaking_the_contract_is_bad_input(plant, tmp_path, change, message):
    broken = write_ingest_dir(tmp_path / "in", change(read_series(plant)))
    with pytest.raises(BadInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_ood_split(broken, tmp_path / "out", OodConfig(families=["ramp"]))
    assert not (tmp_path / "out").exists()


def test_horizons_in_patches_of_32_each_get_their_windows(plant, tmp_path):
    """Issue 8: horizons of 1, 4 and 16 patches (given in time points) from one recipe list."""
    cfg = OodConfig(horizons=[32, 128, 512], families=["noise_increase"], severities=[1.0, 2.0])
    summary = run_ood_split(plant, tmp_path / "h", cfg)
    assert summary["horizons"] == [32, 128, 512] and summary["patch_friendly"] is True
    evals = pl.read_parquet(tmp_path / "h" / "eval.parquet")
    for scenario in ("id", "noise_increase:2"):
        rows = evals.filter(pl.col("scenario") == scenario)
        assert sorted(rows["horizon"].unique()) == [32, 128, 512]
        assert (rows["target"].list.len() == rows["horizon"]).all()
        assert (rows["target_observed"].list.len() == rows["horizon"]).all()
    train = pl.read_parquet(tmp_path / "h" / "train.parquet").select("series_id", "timestamp")
    points = _target_points(evals)
    assert points.join(train, on=["series_id", "timestamp"]).is_empty()


def test_series_covering_different_periods_each_get_windows(tmp_path):
    """Fractions apply per series: a machine exported for another month still gets ID windows."""
    early = plant_frame(lines=1, machines=1, short=None)
    late = plant_frame(lines=1, machines=1, short=None, seed=3).with_columns(
        pl.col("series_id").str.replace("line1", "line2"),
        line=pl.lit("line2"),
        timestamp=pl.col("timestamp") + dt.timedelta(days=60),
    )
    clean = write_ingest_dir(tmp_path / "clean", pl.concat([early, late]))
    summary = run_ood_split(clean, tmp_path / "s", OodConfig(families=["ramp"]))
    evals = pl.read_parquet(tmp_path / "s" / "eval.parquet")
    for scenario in ("id", "future"):
        assert evals.filter(pl.col("scenario") == scenario)["series_id"].n_unique() == 4
    assert summary["eval_windows"] == evals.height
    train = pl.read_parquet(tmp_path / "s" / "train.parquet")
    assert train["series_id"].n_unique() == 4


def test_timestamps_as_split_points_are_one_calendar(plant, tmp_path):
    cfg = OodConfig(
        id_start="2026-01-12T00:00:00Z",
        train_end="2026-01-15",
        future_start="2026-01-15T12:00",
        families=["ramp"],
    )
    run_ood_split(plant, tmp_path / "s", cfg)
    train = pl.read_parquet(tmp_path / "s" / "train.parquet")
    assert train["timestamp"].max() < dt.datetime(2026, 1, 12, tzinfo=dt.timezone.utc)
    evals = pl.read_parquet(tmp_path / "s" / "eval.parquet")
    future = evals.filter(pl.col("scenario") == "future")
    assert future["target_start"].min() >= dt.datetime(2026, 1, 15, 12, tzinfo=dt.timezone.utc)


def test_windows_with_a_constant_context_are_left_out(tmp_path):
    """A label column (0, then 1 from some point on: SKAB's `anomaly`) or a sensor parked at 0 has
    no spread to instance-scale by: such windows would weigh every wrong point ×1e5 (SKAB's
    held-out CRPS was 3200 instead of ~0.7). They are not cut; varying contexts still are."""
    frame = plant_frame(lines=1, machines=2, short=None)
    n = frame.filter(pl.col("series_id") == "line1/m1/pressure").height
    step = np.zeros(n, np.float32)
    step[int(0.9 * n) :] = 1.0  # constant before 0.9: every ID context; a jump in `future`
    frame = frame.with_columns(
        value=pl.when(pl.col("series_id") == "line1/m1/pressure")
        .then(pl.Series(np.tile(step, frame["series_id"].n_unique())))
        .otherwise(pl.col("value")),
        observed=pl.when(pl.col("series_id") == "line1/m1/pressure")
        .then(True)
        .otherwise(pl.col("observed")),
    )
    clean = write_ingest_dir(tmp_path / "clean", frame)
    run_ood_split(clean, tmp_path / "s", OodConfig(families=["level_shift"], severities=[2.0]))
    evals = pl.read_parquet(tmp_path / "s" / "eval.parquet")
    contexts = evals.select(
        "series_id",
        spread=pl.col("context").list.max() - pl.col("context").list.min(),
    )
    assert contexts["spread"].min() > 0
    ids = evals.filter(pl.col("scenario") == "id")["series_id"]
    assert "line1/m1/pressure" not in set(ids) and ids.n_unique() == 3
    future = evals.filter(pl.col("scenario") == "future")["series_id"]
    assert "line1/m1/pressure" in set(future)  # contexts that hold the jump vary: kept
    shift = pl.read_parquet(tmp_path / "s" / "scenarios.parquet")
    assert shift["wasserstein"].max() < 100


# --------------------------------------------------------------------------------------------
# The validation split: the end of the training period, time-separated from train and test


def _spans(out) -> pl.DataFrame:
    series = read_series(out.parent / "clean")
    return series.group_by("series_id").agg(
        first=pl.col("timestamp").min(), last=pl.col("timestamp").max()
    )


def _fraction(at: float) -> pl.Expr:
    return pl.col("first") + (pl.col("last") - pl.col("first")) * at


def test_validation_windows_lie_at_the_end_of_the_training_period(split):
    out, summary = split
    evals = pl.read_parquet(out / "eval.parquet").join(_spans(out), on="series_id")
    val = evals.filter(pl.col("split") == "val")
    assert val.height == summary["val_windows"] > 0
    assert set(val["scenario"]) == {"val"} and set(val["family"]) == {"val"}
    assert set(evals.filter(pl.col("scenario") != "val")["split"]) == {"test"}
    assert sorted(val["horizon"].unique()) == [32, 128]
    # val_fraction 0.1 of the training period [first, id_start = 0.6): targets in [0.54, 0.6)
    end = pl.col("target_start") + pl.duration(seconds=(pl.col("horizon") - 1) * pl.col("freq_s"))
    assert val.select((pl.col("target_start") >= _fraction(0.54)).all()).item()
    assert val.select((end < _fraction(0.6)).all()).item()
    # the context reaches back into the training range, as a forecast's would
    ctx = pl.col("target_start") - pl.duration(seconds=512 * pl.col("freq_s"))
    assert val.select((ctx < _fraction(0.54)).all()).item()
    # train.parquet stops where validation targets begin
    train = pl.read_parquet(out / "train.parquet").join(_spans(out), on="series_id")
    assert train.select((pl.col("timestamp") < _fraction(0.54)).all()).item()
    assert train.select((pl.col("timestamp") >= _fraction(0.53)).any()).item()
    # only series that are trained on get validation windows, at most max_windows each
    assert not any("/m3/" in s for s in val["series_id"].unique())
    assert val.group_by("series_id", "horizon").len()["len"].max() <= 64
    scenarios = pl.read_parquet(out / "scenarios.parquet")
    assert scenarios.filter(pl.col("scenario") == "val")["n_windows"].item() == val.height


def test_validation_targets_never_meet_test_targets_or_train(split):
    out, _ = split
    evals = pl.read_parquet(out / "eval.parquet")
    val = (
        evals.filter(pl.col("scenario") == "val")
        .with_columns(pl.int_ranges(0, pl.col("horizon")).alias("k"))
        .explode("k", "target_observed")
        .select(
            "series_id",
            "target_observed",
            (pl.col("target_start") + pl.duration(seconds=pl.col("k") * pl.col("freq_s"))).alias(
                "timestamp"
            ),
        )
    )
    test = _target_points(evals.filter(pl.col("scenario") != "val"))
    test = test.select("series_id", "timestamp").unique()
    seen = val.filter("target_observed")
    assert seen.height > 1000
    assert seen.join(test, on=["series_id", "timestamp"]).is_empty()
    # points matching the custom condition (custom:late test targets) are hidden in val windows,
    # as they are in train.parquet
    late = val.filter(pl.col("timestamp").dt.hour() >= 12)
    assert late.height > 0 and not late["target_observed"].any()
    train = pl.read_parquet(out / "train.parquet").select("series_id", "timestamp")
    assert val.join(train, on=["series_id", "timestamp"]).is_empty()


def test_val_fraction_zero_keeps_the_old_layout_and_ids(plant, split, tmp_path):
    out, _ = split
    cfg = _config(val_fraction=0.0)
    summary = run_ood_split(plant, tmp_path / "noval", cfg)
    evals = pl.read_parquet(tmp_path / "noval" / "eval.parquet")
    assert summary["val_windows"] == 0 and set(evals["split"]) == {"test"}
    assert "val" not in pl.read_parquet(tmp_path / "noval" / "scenarios.parquet")["scenario"]
    # the test windows are the same (ids included) with or without validation
    with_val = pl.read_parquet(out / "eval.parquet").filter(pl.col("split") == "test")
    same = ["scenario", "series_id", "window_id", "target_start", "target"]
    assert evals.select(same).equals(with_val.select(same))
    # and train.parquet runs up to id_start again
    train = pl.read_parquet(tmp_path / "noval" / "train.parquet").join(_spans(out), on="series_id")
    assert train.select((pl.col("timestamp") >= _fraction(0.59)).any()).item()
    assert train.select((pl.col("timestamp") < _fraction(0.6)).all()).item()


def test_val_fraction_sets_the_count_and_seed_the_choice(plant, tmp_path):
    small = OodConfig(families=[], horizons=[32], val_fraction=0.05, max_windows=1000)
    large = OodConfig(families=[], horizons=[32], val_fraction=0.2, max_windows=1000)
    a = run_ood_split(plant, tmp_path / "a", small)
    b = run_ood_split(plant, tmp_path / "b", large)
    assert 0 < a["val_windows"] < b["val_windows"]
    # the train rows lost are the validation target range
    assert a["train_rows"] > b["train_rows"]
    few = OodConfig(families=[], horizons=[32], val_fraction=0.2, max_windows=2, seed=1)
    first = run_ood_split(plant, tmp_path / "c", few)
    run_ood_split(plant, tmp_path / "d", few)
    assert first["val_windows"] == 2 * 12  # 12 trained series long enough, 2 windows each
    frames = [pl.read_parquet(tmp_path / d / "eval.parquet") for d in ("c", "d")]
    assert frames[0].equals(frames[1])


@pytest.mark.parametrize("value", [-0.1, 1.0])
def test_val_fraction_out_of_range_is_bad_input(plant, tmp_path, value):
    with pytest.raises(BadInputError, match="val_fraction"):
        run_ood_split(plant, tmp_path / "bad", OodConfig(val_fraction=value))
    assert not (tmp_path / "bad").exists()
