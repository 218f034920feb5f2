"""The bench's fairness protocol: which strategies run, and equal parameter budgets.

A *strategy* is an embedding × a normalisation (``patch/std``). Every strategy trains the same
backbone; what differs is the embedding and the head's width (the head predicts
``token_length`` points per token). To keep totals comparable, every strategy whose total parameter
count is more than ``tolerance`` (5%) away from the reference (``patch`` by default) gets its
embedding's ``hidden`` width (a Linear → SiLU → Linear projection, see ``embedding_strategies``;
at least 16) chosen so that its total comes as close to the reference as it can, then, if still
too far, its per-step width ``step_dim`` (`quantised`, `lag_features`; at least 4), then its
``bins`` (`quantised`'s table; at least 128). Afterwards all totals must lie within
``max_spread`` (10%) of each other, or the bench refuses to run: it would not be a fair comparison.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tsfm_cli.errors import BadInputError

Counter = Callable[[str, dict[str, Any]], int]


@dataclass(frozen=True)
class Strategy:
    embedding: str
    normalisation: str
    options: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    params_total: int | None = field(default=None, compare=False)
    params: int | None = field(default=None, compare=False)  # N, non-embedding
    token_length: int | None = field(default=None, compare=False)

    @property
    def label(self) -> str:
        return f"{self.embedding}/{self.normalisation}"


def strategy_grid(
    embeddings: list[str], normalisations: list[str], cross: bool = False
) -> list[Strategy]:
    """Every embedding with the first normalisation, and the first embedding with every other
    normalisation (two axes through the default), or the full cross product with ``cross``."""
    if cross:
        pairs = [(e, n) for e in embeddings for n in normalisations]
    else:
        pairs = [(e, normalisations[0]) for e in embeddings]
        pairs += [(embeddings[0], n) for n in normalisations[1:]]
    return [Strategy(e, n) for e, n in dict.fromkeys(pairs)]


# Knobs tried in this order, each with its smallest allowed value (a narrower bottleneck would
# cripple the embedding rather than resize it).
KNOBS = (("hidden", 16), ("step_dim", 4), ("bins", 128))


def takes(embedding_cls: type, option: str) -> bool:
    return option in inspect.signature(embedding_cls.__init__).parameters


def _fit_knob(
    embedding: str,
    options: dict[str, Any],
    total: int,
    target: int,
    count: Counter,
    knob: str,
    minimum: int,
) -> tuple[dict[str, Any], int]:
    """The knob value ≥ minimum whose total is closest to target (totals are affine in it)."""
    best = (options, total)
    low, high = (count(embedding, {**options, knob: v}) for v in (minimum, minimum + 1))
    slope = high - low
    if slope <= 0:
        return best
    guess = max(minimum, round(minimum + (target - low) / slope))
    for value in sorted({max(minimum, guess - 1), guess, guess + 1, minimum}):
        candidate = count(embedding, {**options, knob: value})
        if abs(candidate - target) < abs(best[1] - target):
            best = ({**options, knob: value}, candidate)
    return best


def match_parameters(
    strategies: list[Strategy],
    count: Counter,
    registry: dict[str, type],
    user_options: dict[str, dict[str, Any]] | None = None,
    reference: str = "patch",
    tolerance: float = 0.05,
    max_spread: float = 0.10,
) -> list[Strategy]:
    """Strategies with the embedding options they will train with and their total params.

    `count(embedding, options)` → total parameters of the full model. A knob the user set in
    `user_options` is kept as it is.
    """
    user_options = user_options or {}
    embeddings = list(dict.fromkeys(s.embedding for s in strategies))
    ref = reference if reference in embeddings else embeddings[0]
    target = count(ref, dict(user_options.get(ref, {})))
    chosen: dict[str, tuple[dict[str, Any], int]] = {}
    for embedding in embeddings:
        options = dict(user_options.get(embedding, {}))
        total = count(embedding, options)
        for knob, minimum in KNOBS:
            if abs(total - target) <= tolerance * target:
                break
            if knob not in options and takes(registry[embedding], knob):
                options, total = _fit_knob(embedding, options, total, target, count, knob, minimum)
        chosen[embedding] = (options, total)
    totals = {e: t for e, (_, t) in chosen.items()}
    low, high = min(totals.values()), max(totals.values())
    if high > low * (1 + max_spread):
        detail = ", ".join(f"{e} {t:,}" for e, t in sorted(totals.items(), key=lambda kv: kv[1]))
        raise BadInputError(
            f"embed-bench: total parameters differ by more than {max_spread:.0%} even after "
            f"matching widths ({detail}); drop the outlier from 'strategies' or change "
            "'patch_size' (multi_patch's token length follows the sampling frequency)"
        )
    return [
        Strategy(s.embedding, s.normalisation, chosen[s.embedding][0], chosen[s.embedding][1])
        for s in strategies
    ]
