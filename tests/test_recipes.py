"""Every recipe shipped in recipes/ loads through each stage's config class and value checks,
so a renamed or removed key (or a value a stage now refuses) fails CI, not a user's nightly run."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from tsfm_cli.pipeline import PIPELINE, RunConfig
from tsfm_cli.recipe import SECTIONS, build_config, load_section, read_recipe

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))


def _value_checks(stage: str, config, source) -> None:
    """The stage's own checks beyond keys and types (raise BadInputError / return a message)."""
    if stage == "ingest":
        from tsfm_cli.ingest.config import validate

        validate(config, source.where)
    elif stage == "ood-split":
        from tsfm_cli.ood.config import check_config

        check_config(config, source)
    elif stage == "embed-bench":
        from tsfm_cli.embed_bench.config import check_config

        check_config(config, source)
    elif stage == "train":
        from tsfm_cli.train.config import check_config, grid

        assert check_config(config) is None, check_config(config)
        assert grid(config)
    elif stage == "fit":
        config.check()


def test_the_recipes_folder_is_found():
    names = {path.name for path in RECIPES}
    assert {"quickstart.yaml", "factory.yaml", "paper.yaml"} <= names


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda path: path.name)
def test_recipe_sections_build_their_stage_config(recipe):
    data, _ = read_recipe(recipe)
    assert data, f"{recipe.name} is empty"
    assert set(data) <= set(SECTIONS), f"{recipe.name}: not a sectioned recipe"
    if "run" in data:
        values, source = load_section(recipe, "run")
        run = build_config(RunConfig, values, source)
        assert run.sources and run.workdir
    for spec in PIPELINE:
        if spec.name not in data:
            continue
        config_class = getattr(importlib.import_module(spec.module), spec.config_class)
        values, source = load_section(recipe, spec.name)
        assert values, f"{recipe.name}: section '{spec.name}' is empty"
        config = build_config(config_class, values, source)
        _value_checks(spec.name, config, source)


@pytest.mark.parametrize("name", ["quickstart.yaml", "factory.yaml", "paper.yaml"])
def test_full_chain_recipes_have_what_tsfm_run_needs(name):
    """`tsfm run` reads `run:` and gives ingest raw sources and every later stage its upstream."""
    data, _ = read_recipe(RECIPES[0].parent / name)
    for section in ("run", "ingest", "ood-split", "train", "fit"):
        assert section in data, f"{name} has no '{section}:' section"
