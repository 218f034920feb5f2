"""Hostile recipes: alias bombs and numbers out of range are one clear line (exit 2), named."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from tsfm_cli.bounds import BOUNDS
from tsfm_cli.errors import BadInputError
from tsfm_cli.recipe import MAX_RECIPE_NODES, build_config, load_section, read_recipe


def _bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines)


def test_alias_bomb_inside_embedding_options_is_refused_before_building(tmp_path):
    indented = "\n".join("      " + line for line in _bomb().splitlines())
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text(
        "ingest:\n  freq: 1m\nembed-bench:\n  embedding_options:\n    patch:\n" + indented + "\n"
    )
    with pytest.raises(BadInputError) as err:
        read_recipe(recipe)
    message = str(err.value)
    assert f"{recipe}:3: key 'embed-bench'" in message
    assert f"{MAX_RECIPE_NODES:,} YAML nodes" in message


def test_recursive_alias_is_refused(tmp_path):
    recipe = tmp_path / "loop.yaml"
    recipe.write_text("ingest: &x\n  files: *x\n")
    with pytest.raises(BadInputError, match="YAML nodes"):
        read_recipe(recipe)


def test_small_aliases_still_work(tmp_path):
    recipe = tmp_path / "ok.yaml"
    recipe.write_text("base: &b [1, 2]\nother: *b\n")
    data, _ = read_recipe(recipe)
    assert data == {"base": [1, 2], "other": [1, 2]}


def test_alias_bomb_cli_exit_2(tmp_path, tsfm):
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text(_bomb())
    result = tsfm("fit", str(tmp_path), "-c", str(recipe), timeout=60)
    assert result.returncode == 2, result.stderr
    assert "YAML nodes" in result.stderr and "Traceback" not in result.stderr


def test_spike_window_out_of_range_names_the_key_and_line(tmp_path):
    from tsfm_cli.ingest import IngestConfig

    recipe = tmp_path / "r.yaml"
    recipe.write_text("ingest:\n  freq: 1m\n  spike_window: 100000000000000000000\n")
    values, source = load_section(recipe, "ingest")
    with pytest.raises(BadInputError) as err:
        build_config(IngestConfig, values, source)
    assert f"{recipe}:3: key 'ingest.spike_window'" in str(err.value)
    assert "out of range (allowed 3 … 10,001)" in str(err.value)


def test_numbers_inside_lists_and_nan_are_checked(tmp_path):
    from tsfm_cli.ingest import IngestConfig

    recipe = tmp_path / "r.yaml"
    recipe.write_text("ranges:\n  temp: [.nan, 10]\n")
    values, source = load_section(recipe, None)
    with pytest.raises(BadInputError, match="key 'ranges'.*nan is out of range"):
        build_config(IngestConfig, values, source)


def test_bootstrap_option_out_of_range_exit_2(tmp_path, tsfm):
    result = tsfm("fit", str(tmp_path), "--bootstrap", "100000000000", timeout=60)
    assert result.returncode == 2, result.stderr
    assert "n_boot" in result.stderr and "out of range" in result.stderr


def test_every_bound_names_a_numeric_setting():
    """No stale entries: each bound is a field of its settings class holding numbers."""
    from tsfm_cli.embed_bench import EmbedBenchConfig
    from tsfm_cli.fit import FitConfig
    from tsfm_cli.ingest import IngestConfig
    from tsfm_cli.ood import OodConfig
    from tsfm_cli.train import TrainConfig

    configs = (IngestConfig, OodConfig, EmbedBenchConfig, TrainConfig, FitConfig)
    classes = {c.__name__: c for c in configs}
    for name, bounds in BOUNDS.items():
        hints = typing.get_type_hints(classes[name])
        fields = {f.name for f in dataclasses.fields(classes[name])}
        for key, (low, high) in bounds.items():
            assert key in fields, f"{name}.{key}"
            assert "int" in str(hints[key]) or "float" in str(hints[key]), f"{name}.{key}"
            assert low <= high


def test_unlisted_numbers_must_be_finite():
    from tsfm_cli.bounds import out_of_bounds

    assert out_of_bounds("NoSuchConfig", "x", float("inf"))
    assert out_of_bounds("NoSuchConfig", "x", 5) is None
    assert out_of_bounds("IngestConfig", "spike_window", True) is None  # booleans are not numbers


def _run_recipe(tmp_path, body: str):
    """A recipe whose ingest would work, plus `body`; `tsfm run` on it, and the workdir."""
    from ingest_helpers import wide_csv, write_files

    src = write_files(tmp_path / "src", {"a.csv": wide_csv(list(range(30)))})
    work = tmp_path / "work"
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"run:\n  sources: [{src}]\n  workdir: {work}\n" + body)
    return recipe, work


def test_per_file_setting_of_wrong_type_names_file_line_and_full_key(tmp_path, tsfm):
    recipe, work = _run_recipe(
        tmp_path,
        'ingest:\n  files:\n    "line2/*":\n      headerless: true\n      timezone: 5\n',
    )
    result = tsfm("run", recipe, timeout=120)  # the glob matches no file: checked anyway
    assert result.returncode == 2, result.stderr
    assert f"{recipe}:8: key 'ingest.files.\"line2/*\".timezone': expected" in result.stderr
    assert not work.exists()


def test_per_file_setting_values_are_checked_too(tmp_path):
    from tsfm_cli.ingest import IngestConfig
    from tsfm_cli.ingest.config import validate

    recipe = tmp_path / "r.yaml"
    recipe.write_text('files:\n  "*.dat":\n    timezone: Mars/Olympus\n')
    values, source = load_section(recipe, "ingest")
    config = build_config(IngestConfig, values, source)
    with pytest.raises(BadInputError, match=r"r.yaml:3: key 'files.\"\*.dat\".timezone'.*Mars"):
        validate(config, source.where)


def test_unknown_embedding_option_fails_before_ingest_runs(tmp_path, tsfm):
    recipe, work = _run_recipe(
        tmp_path,
        "embed-bench:\n  embedding_options:\n    pointwise: {hiden: 32}\n",
    )
    result = tsfm("run", recipe, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "key 'embed-bench.embedding_options.pointwise.hiden': unknown option" in result.stderr
    assert not work.exists()  # nothing ran


def test_embedding_option_width_out_of_range(tmp_path):
    from tsfm_cli.embed_bench.config import check_config

    recipe = tmp_path / "r.yaml"
    recipe.write_text("embedding_options:\n  pointwise:\n    hidden: 5000000\n")
    values, source = load_section(recipe, "embed-bench")
    from tsfm_cli.embed_bench import EmbedBenchConfig

    config = build_config(EmbedBenchConfig, values, source)
    with pytest.raises(BadInputError, match="pointwise.hidden': needs a whole number"):
        check_config(config, source)


def test_sections_of_stages_left_out_are_checked_too(tmp_path, tsfm):
    recipe, work = _run_recipe(tmp_path, "fit:\n  bootstrapp: 10\n")
    result = tsfm("run", recipe, "--only", "ingest", timeout=120)
    assert result.returncode == 2 and "key 'fit.bootstrapp': unknown key" in result.stderr
    assert not work.exists()
