"""YAML recipes: settings for one stage or for the whole chain (DESIGN §1).

A recipe is either flat (the keys of one stage) or sectioned by stage name (``ingest:``,
``ood-split:``, ``train:``, ``embed-bench:``, ``fit:``, ``run:``), so the same file drives
``tsfm run`` and each stage alone. Every stage's settings are a dataclass; recipe values override
its defaults and CLI options override the recipe. Unknown keys and wrong types are errors that name
the file, the line and the key.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tsfm_cli.bounds import out_of_bounds
from tsfm_cli.errors import BadInputError

SECTIONS = ("run", "ingest", "ood-split", "train", "embed-bench", "fit")

ConfigT = TypeVar("ConfigT")


class RecipeLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that reads `1e-3` and `1.0e6` as floats (YAML 1.2), as people write them;
    PyYAML's YAML 1.1 rules want a dot and a signed exponent (`1.0e-3`) and return a string."""


RecipeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


@dataclass
class RecipeSource:
    """Where settings came from, so that errors can point at a file and line."""

    path: Path | None = None
    section: str | None = None
    lines: dict[tuple[str, ...], int] = field(default_factory=dict)

    def where(self, *keys: str) -> str:
        """`recipes/x.yaml:12 (ingest.ranges)` or `option --ranges` when no file set it."""
        scoped = ((self.section,) if self.section else ()) + tuple(keys)
        dotted = ".".join(k if _PLAIN_KEY.match(k) else f'"{k}"' for k in scoped)
        if self.path is None:
            return f"key '{dotted}'"
        line = self.lines.get(scoped)
        location = f"{self.path}:{line}" if line else str(self.path)
        return f"{location}: key '{dotted}'"


_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")

# A recipe is a screenful of settings; YAML aliases can make a small file expand into billions of
# nodes ("billion laughs"). The expanded size is counted on the composed graph before anything
# is built from it.
MAX_RECIPE_NODES = 100_000


def _expanded_nodes(node: yaml.Node, memo: dict[int, int]) -> int:
    """Nodes `node` stands for once every alias is expanded (shared nodes counted per use)."""
    known = memo.get(id(node))
    if known is not None:
        return known
    memo[id(node)] = MAX_RECIPE_NODES + 1  # a node inside itself (recursive alias): too big
    total = 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            total += _expanded_nodes(key_node, memo) + _expanded_nodes(value_node, memo)
            if total > MAX_RECIPE_NODES:
                break
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            total += _expanded_nodes(item, memo)
            if total > MAX_RECIPE_NODES:
                break
    memo[id(node)] = total
    return total


def _check_size(path: Path, node: yaml.Node | None) -> None:
    if node is None or _expanded_nodes(node, {}) <= MAX_RECIPE_NODES:
        return
    where = f"{path}:{node.start_mark.line + 1}"
    if isinstance(node, yaml.MappingNode):  # name the top-level key that is too big
        for key_node, value_node in node.value:
            if _expanded_nodes(value_node, {}) > MAX_RECIPE_NODES // 2:
                where = f"{path}:{key_node.start_mark.line + 1}: key '{key_node.value}'"
                break
    raise BadInputError(
        f"{where}: recipe expands to more than {MAX_RECIPE_NODES:,} YAML nodes "
        "(aliases repeated inside aliases?)"
    )


def _key_lines(node: yaml.Node, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], int]:
    lines: dict[tuple[str, ...], int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (*prefix, str(key_node.value))
            lines[key] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, key))
    return lines


def read_recipe(path: Path | str) -> tuple[dict[str, Any], dict[tuple[str, ...], int]]:
    """Parse a recipe file safely (`RecipeLoader`); returns the mapping and each key's line."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{path}: recipe not found")
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=RecipeLoader)
        _check_size(path, node)
        data = yaml.load(text, Loader=RecipeLoader)  # noqa: S506 (a SafeLoader)
        lines = _key_lines(node) if data else {}
    except UnicodeDecodeError as exc:
        raise BadInputError(f"{path}: recipe is not UTF-8 text ({exc.reason})") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise BadInputError(f"{where}: invalid YAML: {problem}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise BadInputError(f"{path}: a recipe must be a mapping of keys to values")
    return data, lines


def load_section(path: Path | str | None, section: str) -> tuple[dict[str, Any], RecipeSource]:
    """The settings for `section` from a recipe (flat or sectioned); ({}, source) without one."""
    if path is None:
        return {}, RecipeSource(section=None)
    path = Path(path)
    data, lines = read_recipe(path)
    if any(key in SECTIONS for key in data):
        for key in data:
            if key not in SECTIONS:
                line = lines.get((key,))
                raise BadInputError(
                    f"{path}:{line}: unknown section '{key}' (known: {', '.join(SECTIONS)})"
                )
        values = data.get(section) or {}
        if not isinstance(values, dict):
            raise BadInputError(
                f"{path}:{lines.get((section,))}: section '{section}' must be a mapping"
            )
        return values, RecipeSource(path, section, lines)
    return data, RecipeSource(path, None, lines)


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is typing.Literal:  # "one of absent, faults, both", not "Literal"
        return "one of " + ", ".join(str(v) for v in typing.get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check_type(value: Any, tp: Any) -> bool:
    """A small structural check of YAML values against dataclass annotations."""
    if tp is Any:
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_check_type(value, arg) for arg in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp in (str, bool):
        return isinstance(value, tp)
    if origin in (list, tuple):
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            return False
        item_type = args[0] if args else Any
        return all(_check_type(item, item_type) for item in value)
    if origin is dict:
        key_type, value_type = typing.get_args(tp) or (Any, Any)
        return isinstance(value, dict) and all(
            _check_type(k, key_type) and _check_type(v, value_type) for k, v in value.items()
        )
    if tp in (list, dict, tuple):
        return isinstance(value, tp)
    return True


def _coerce(value: Any, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if tp is float and isinstance(value, int):
        return float(value)
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    return value


def build_config(
    cls: type[ConfigT],
    values: dict[str, Any],
    source: RecipeSource,
    overrides: dict[str, Any] | None = None,
) -> ConfigT:
    """Defaults of `cls` ← recipe `values` ← CLI `overrides` (None means "not given")."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in values:
        if key not in known:
            raise BadInputError(
                f"{source.where(str(key))}: unknown key (known: {', '.join(sorted(known))})"
            )
    merged = dict(values)
    for key, value in (overrides or {}).items():
        if key not in known:
            raise ValueError(f"override {key!r} is not a field of {cls.__name__}")
        if value is not None:
            merged[key] = value
    for key, value in merged.items():
        if not _check_type(value, hints[key]):
            origin = source.where(key) if key in values else f"option for '{key}'"
            raise BadInputError(f"{origin}: expected {_type_name(hints[key])}, got {value!r}")
        problem = out_of_bounds(cls.__name__, key, value)
        if problem:
            origin = source.where(key) if key in values else f"option for '{key}'"
            raise BadInputError(f"{origin}: {problem}")
        merged[key] = _coerce(value, hints[key])
    return cls(**merged)


def config_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as plain data for the manifest."""
    return dataclasses.asdict(config)
