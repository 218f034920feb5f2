"""`tsfm fit` end to end: generated results tables in, laws/ out; the CLI's exit codes."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from tsfm_cli.errors import BadInputError
from tsfm_cli.fit import FitConfig, run_fit
from tsfm_cli.fit.analysis import next_cleaner
from tsfm_cli.fit.synth import synth_results
from tsfm_cli.stagedir import StageWriter

LAWS = {
    "id": (0.1, 200.0, 0.35, 300.0, 0.3),
    "level_shift:2": (0.1, 200.0, 0.15, 300.0, 0.3),
}
FAST = {"n_boot": 60, "plots": False}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("fit")
    frame = synth_results(
        LAWS, archs=("encoder", "decoder"), arch_scale={"decoder": 1.3}, noise=0.01
    )
    path = root / "results.parquet"
    frame.write_parquet(path)
    return path


def _laws(out):
    return pl.read_parquet(out / "laws.parquet")


def test_fit_writes_laws_with_the_contract_columns(results, tmp_path):
    out = tmp_path / "laws"
    summary = run_fit([results], out, FitConfig(**FAST))
    laws = _laws(out)
    for col in (
        "arch",
        "scenario",
        "metric",
        "x",
        "law",
        "coef",
        "value",
        "ci_low",
        "ci_high",
        "r2_log",
        "rmse_log",
        "n_points",
        "converged",
        "note",
    ):
        assert col in laws.columns
    assert summary["laws_fitted"] > 0 and summary["groups"] == 4
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "fit" and "laws.parquet" in manifest["outputs"]
    assert (out / "report.md").is_file() and (out / "curves.parquet").is_file()
    # the ID exponent of L(N, D) is recovered for the encoder (α = 0.35)
    row = laws.filter(
        (pl.col("arch") == "encoder")
        & (pl.col("scenario") == "id")
        & (pl.col("law") == "joint")
        & (pl.col("coef") == "alpha")
    ).row(0, named=True)
    assert row["value"] == pytest.approx(0.35, abs=0.05)
    assert row["ci_low"] < row["value"] < row["ci_high"]
    # rerun with the same inputs and config: nothing to redo
    again = run_fit([results], out, FitConfig(**FAST))
    assert again["skipped"] is True


def test_id_vs_ood_and_arch_differences(results, tmp_path):
    out = tmp_path / "laws"
    run_fit([results], out, FitConfig(**FAST, laws=["joint"]))
    comp = pl.read_parquet(out / "comparisons.parquet")
    ood = comp.filter(
        (pl.col("comparison") == "ood_vs_id")
        & (pl.col("coef") == "alpha")
        & (pl.col("arch") == "encoder")
    ).row(0, named=True)
    assert ood["diff"] == pytest.approx(0.15 - 0.35, abs=0.06)
    assert ood["excludes_zero"] and ood["ci_high"] < 0
    beta = comp.filter((pl.col("comparison") == "ood_vs_id") & (pl.col("coef") == "beta"))
    assert beta.height == 2  # β is the same in both scenarios: reported, whatever its interval
    arch = comp.filter(
        (pl.col("comparison") == "arch_vs_arch")
        & (pl.col("scenario") == "id")
        & (pl.col("coef") == "alpha")
    ).row(0, named=True)
    assert {arch["label_a"], arch["vs"]} == {"decoder", "encoder"}
    assert arch["excludes_zero"]  # decoder α is 1.3 × the encoder's


def test_plan_reports_compute_optimal_model_with_intervals(results, tmp_path):
    out = tmp_path / "laws"
    summary = run_fit([results], out, FitConfig(**FAST, laws=["joint"], budget_flops=1e15))
    plan = summary["plan"]
    scen = {(r["arch"], r["scenario"]) for r in plan}
    assert ("encoder", "id") in scen and ("encoder", "level_shift:2") in scen
    row = next(r for r in plan if r["arch"] == "encoder" and r["scenario"] == "id")
    assert row["N_opt_low"] <= row["N_opt"] <= row["N_opt_high"]
    k = row["flops_per_6nd"]
    assert row["N_opt"] * row["D_opt"] * 6 * k == pytest.approx(1e15, rel=1e-6)
    target = run_fit(
        [results], tmp_path / "t", FitConfig(**FAST, laws=["joint"], target_loss=row["loss"])
    )
    again = next(r for r in target["plan"] if r["arch"] == "encoder" and r["scenario"] == "id")
    assert again["budget_flops"] == pytest.approx(1e15, rel=1e-3)


def test_horizon_and_quality_axes_get_one_law_each_and_the_tradeoff(tmp_path):
    frame = synth_results(
        {"id": LAWS["id"], "level_shift:2": LAWS["level_shift:2"]},
        horizons=[1, 4, 16],
        qualities={"clean": 1.0, "missing:0.3": 3.0},
        sizes=(1e3, 1e4, 1e5, 1e6),
        data=(1e5, 1e6, 1e7),
        checkpoints=1,
        full_grid=False,
        noise=0.01,
    )
    src = tmp_path / "results.parquet"
    frame.write_parquet(src)
    out = tmp_path / "laws"
    summary = run_fit(
        [src], out, FitConfig(n_boot=40, xs=["N"], laws=["power", "joint"], budget_flops=1e14)
    )
    assert summary["group_by"] == ["arch", "scenario", "horizon", "train_quality"]
    laws = _laws(out).filter((pl.col("law") == "power") & (pl.col("coef") == "alpha"))
    assert laws.height == 2 * 3 * 2  # scenario × horizon × quality
    assert sorted(laws["horizon"].unique().to_list()) == [1, 4, 16]
    assert set(laws["train_quality"]) == {"clean", "missing:0.3"}
    assert (out / "horizon.png").is_file()
    trade = summary["quality_tradeoff"]
    assert len(trade) == 3  # one per horizon: missing:0.3 → clean
    assert all(r["next_level"] == "clean" for r in trade)
    assert all(r["gain_cleaning"] > 0 for r in trade)  # B is 3× larger with degraded data
    # 1e14 FLOPs is ~50× the largest run: the model option is extrapolation, no verdict
    assert all(r["status"] == "extrapolation" and r["better"] == "extrapolation" for r in trade)
    # allowed that far out, each verdict is a Holm-corrected test of the gains' difference
    full = synth_results(
        {"id": LAWS["id"]},
        qualities={"clean": 1.0, "missing:0.3": 3.0},
        sizes=(1e3, 1e4, 1e5, 1e6),
        data=(1e5, 1e6, 1e7),
        checkpoints=1,
        noise=0.01,
    )
    full.write_parquet(tmp_path / "full.parquet")
    inside = run_fit(
        [tmp_path / "full.parquet"],
        tmp_path / "inside",
        FitConfig(n_boot=40, xs=["N"], laws=["joint"], budget_flops=1e14, max_extrapolation=1e3),
    )["quality_tradeoff"]
    assert inside and all(r["status"] == "ok" and r["correction"] == "holm" for r in inside)
    assert all(r["p_adjusted"] >= r["p_value"] for r in inside)
    for r in inside:
        clear = r["p_adjusted"] < 0.05
        assert (r["better"] == "unclear") != clear
        if clear:  # the verdict follows the sign of the difference of the gains
            wins = "clean the data" if r["gain_cleaning"] > r["gain_model"] else "bigger model"
            assert r["better"] == wins
    text = (out / "report.md").read_text()
    assert "Clean the data or buy a bigger model?" in text


def test_next_cleaner_level():
    levels = ["clean", "missing:0.1", "missing:0.3", "noise:1"]
    assert next_cleaner("missing:0.3", levels) == "missing:0.1"
    assert next_cleaner("missing:0.1", levels) == "clean"
    assert next_cleaner("noise:1", levels) == "clean"
    assert next_cleaner("clean", levels) is None


def test_minimal_csv_input_and_too_few_points(tmp_path):
    csv = tmp_path / "paper.csv"
    N = np.array([1e3, 1e4, 1e5, 1e6, 1e7])
    pl.DataFrame({"params": N, "crps": (1e2 / N) ** 0.2}).write_csv(csv)
    thin = tmp_path / "thin.csv"
    pl.DataFrame({"params": [1e3, 1e4], "crps": [1.0, 0.9], "arch": ["tiny"] * 2}).write_csv(thin)
    out = tmp_path / "laws"
    summary = run_fit([csv, thin], out, FitConfig(n_boot=30, plots=True))
    laws = _laws(out)
    model = laws.filter(
        (pl.col("arch") == "model") & (pl.col("law") == "power") & (pl.col("coef") == "alpha")
    )
    assert model["value"][0] == pytest.approx(0.2, abs=1e-9)
    tiny = laws.filter(pl.col("arch") == "tiny")
    assert tiny.height == 2 and tiny["value"].is_null().all()
    assert tiny["note"].str.contains("2 distinct").all()
    assert summary["laws_not_fitted"] == 2
    assert (out / "exponents.png").is_file()


def test_negative_nll_fits_with_e_forms_only(tmp_path):
    N = np.geomspace(1e3, 1e8, 8)
    frame = pl.DataFrame(
        {"params": N, "nll": -1.0 + (1e3 / N) ** 0.3, "status": ["ok"] * 7 + ["failed"]}
    )
    path = tmp_path / "r.parquet"
    frame.write_parquet(path)
    summary = run_fit([path], tmp_path / "laws", FitConfig(metrics=["nll"], n_boot=30, plots=False))
    assert summary["rows_left_out"] == {"status not ok (failed runs)": 1}
    assert summary["nonpositive_losses"] > 0
    laws = _laws(tmp_path / "laws")
    pure = laws.filter(pl.col("law") == "power")
    assert pure["value"].is_null().all()
    assert pure["note"][0].startswith(f"refused: {summary['nonpositive_losses']} of")
    e = laws.filter((pl.col("law") == "power_e") & (pl.col("coef") == "E"))
    assert e["value"][0] == pytest.approx(-1.0, abs=0.05) and e["space"][0] == "loss"


def test_bad_inputs_raise_bad_input(tmp_path, results):
    with pytest.raises(BadInputError, match="no such file"):
        run_fit([tmp_path / "nope"], tmp_path / "o", FitConfig(**FAST))
    with pytest.raises(BadInputError, match="metric column"):
        run_fit([results], tmp_path / "o", FitConfig(**FAST, metrics=["wape"]))
    with pytest.raises(BadInputError, match="not one of"):
        run_fit([results], tmp_path / "o", FitConfig(**FAST, c_rows="everything"))
    wrong = tmp_path / "clean"
    with StageWriter(wrong, "ingest", config={}, inputs=[]) as w:
        w.commit()
    with pytest.raises(BadInputError, match="'ingest' directory"):
        run_fit([wrong], tmp_path / "o", FitConfig(**FAST))


def test_reads_a_train_stage_directory(tmp_path):
    frame = synth_results(LAWS, sizes=(1e3, 1e4, 1e5), data=(1e6,), checkpoints=1)
    res = tmp_path / "results"
    with StageWriter(res, "train", config={}, inputs=[]) as w:
        w.write_parquet("results.parquet", frame)
        w.commit()
    summary = run_fit([res], tmp_path / "laws", FitConfig(**FAST, laws=["power"], xs=["N"]))
    manifest = json.loads((tmp_path / "laws" / "manifest.json").read_text())
    assert manifest["inputs"][0]["stage"] == "train"
    assert summary["laws_fitted"] == 2


def test_cli_exit_codes_and_json(tsfm, results, tmp_path):
    out = tmp_path / "laws"
    ok = tsfm(
        "fit",
        results,
        "-o",
        out,
        "--bootstrap",
        "30",
        "--no-plots",
        "--json",
        "--budget-flops",
        "1e15",
    )
    assert ok.returncode == 0, ok.stderr
    summary = json.loads(ok.stdout, parse_constant=lambda name: pytest.fail(f"{name} in JSON"))
    assert summary["out_dir"] == str(out) and summary["plan"]
    human = tsfm("fit", results, "-o", tmp_path / "h", "--bootstrap", "20", "--no-plots")
    assert human.returncode == 0 and "Scaling exponents" in human.stderr
    missing = tsfm("fit", tmp_path / "missing.parquet")
    assert missing.returncode == 2 and "no such file" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad_metric = tsfm("fit", results, "-o", tmp_path / "x", "--metric", "nope")
    assert bad_metric.returncode == 2 and "nope" in bad_metric.stderr
    recipe = tmp_path / "r.yaml"
    recipe.write_text("fit:\n  metrics: [crps]\n  bootstrapp: 3\n")
    bad_key = tsfm("fit", results, "-o", tmp_path / "y", "--config", recipe)
    assert bad_key.returncode == 2 and "bootstrapp" in bad_key.stderr and ":3" in bad_key.stderr


def test_a_single_run_gets_laws_without_intervals(tmp_path):
    # like a first tiny `tsfm train`: one run per arch, several checkpoints, ID and one drift
    frame = synth_results(
        LAWS, archs=("encoder", "decoder"), sizes=(1e4,), data=(1e6,), checkpoints=5
    )
    path = tmp_path / "r.parquet"
    frame.write_parquet(path)
    summary = run_fit([path], tmp_path / "laws", FitConfig(n_boot=40, xs=["C"]))
    laws = _laws(tmp_path / "laws").filter((pl.col("law") == "power") & (pl.col("coef") == "alpha"))
    assert laws.height == 4 and laws["value"].is_not_null().all()
    assert laws["ci_low"].is_nan().all() and laws["note"].str.contains("only 1 run").all()
    comp = pl.read_parquet(tmp_path / "laws" / "comparisons.parquet")
    assert comp.height > 0 and not comp["excludes_zero"].any()
    assert summary["laws_fitted"] > 0
