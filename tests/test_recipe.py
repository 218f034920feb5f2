from dataclasses import dataclass, field

import pytest

from tsfm_cli.errors import BadInputError
from tsfm_cli.recipe import build_config, load_section


@dataclass
class Settings:
    freq: str | None = None
    sentinels: list[str] = field(default_factory=lambda: ["-999"])
    max_missing: float = 1.0
    ranges: dict[str, list[float]] = field(default_factory=dict)


def test_flat_recipe_overrides_defaults_and_cli_overrides_recipe(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("freq: 1min\nmax_missing: 1\nsentinels: ['-1']\n")
    values, source = load_section(recipe, "ingest")
    config = build_config(Settings, values, source, overrides={"freq": "5min", "max_missing": None})
    assert config == Settings(freq="5min", sentinels=["-1"], max_missing=1.0)
    assert isinstance(config.max_missing, float)


def test_sectioned_recipe_takes_its_own_section(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("ingest:\n  freq: 1s\nfit:\n  whatever: 1\n")
    values, source = load_section(recipe, "ingest")
    assert build_config(Settings, values, source).freq == "1s"


def test_unknown_key_names_file_line_and_key(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("ingest:\n  freq: 1s\n  frequency: 2s\n")
    values, source = load_section(recipe, "ingest")
    with pytest.raises(BadInputError, match=r"r\.yaml:3: key 'ingest\.frequency': unknown key"):
        build_config(Settings, values, source)


def test_unknown_section_is_an_error(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("ingest:\n  freq: 1s\ningset:\n  freq: 2s\n")
    with pytest.raises(BadInputError, match=r"r\.yaml:3: unknown section 'ingset'"):
        load_section(recipe, "ingest")


def test_wrong_type_names_the_key(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("max_missing: lots\n")
    values, source = load_section(recipe, "ingest")
    with pytest.raises(BadInputError, match=r"r\.yaml:1: key 'max_missing': expected float"):
        build_config(Settings, values, source)


def test_invalid_yaml_and_missing_file(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("a: [1, 2\nb: 3\n")
    with pytest.raises(BadInputError, match="invalid YAML"):
        load_section(recipe, "ingest")
    with pytest.raises(BadInputError, match="recipe not found"):
        load_section(tmp_path / "missing.yaml", "ingest")


def test_exponent_floats_without_a_dot_are_numbers(tmp_path):
    """`lr: 1e-3` and `[-1.0e6, 1e6]` are floats (PyYAML's YAML 1.1 rules made them strings,
    so `lr: 1e-3` was refused as 'expected float, got '1e-3'')."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "ingest:\n  max_missing: 1e-1\n  ranges:\n    '*': [-1.0e6, 1E6]\n"
        "  sentinels: ['1e3', v1e3, 1.2.3]\n"
    )
    values, source = load_section(recipe, "ingest")
    config = build_config(Settings, values, source)
    assert config.max_missing == pytest.approx(0.1)
    assert config.ranges == {"*": [-1.0e6, 1.0e6]}
    assert config.sentinels == ["1e3", "v1e3", "1.2.3"]  # quoted and non-numbers stay text
