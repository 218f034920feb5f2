"""How long a run trains: its steps and its data, from the schedule (README "Schedule").

Definitions (one training *window* = context + training horizon time points; its *tokens* =
patches per sequence, ``ceil(context / p) + ceil(horizon / p)``):

- ``epochs`` (default): D is the run's data budget; one epoch = D / window windows, so
  ``steps = ceil(epochs · D / window / global_batch)``. Tokens trained grow with D: 4× the data
  trains 4× the tokens, and C = 6·N·tokens depends on D as the laws assume.
- ``steps``: the paper's fixed length, ``steps`` for every run whatever its D (small D means
  more passes; ``epochs`` is recorded per row so the fit can see it).
- ``isoflop``: a compute budget C per run; tokens = C / (6N),
  ``steps = ceil(tokens / (global_batch · tokens per window))`` and D the points those steps
  cover in ``epochs`` passes, ``D = steps · global_batch · window / epochs`` (at most all the
  training data; at least one window). Chinchilla's approach 2: one run per size at each C.

Each run gets its own learning-rate schedule over its own ``steps`` (warm-up, cosine to
``min_lr`` at its last step), so only a run's last checkpoint is at the end of its schedule
(``final``); mid-schedule checkpoints are reported but are not compute-optimal points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tsfm_cli.train.config import RunSpec, TrainConfig


@dataclass(frozen=True)
class RunPlan:
    data_request: int | float  # what DataBudget.take gets: a fraction ≤ 1 or a point count
    steps: int


def global_batch(config: TrainConfig) -> int:
    """Windows per optimiser step over all devices (``devices: auto`` counts as one)."""
    devices = config.devices if isinstance(config.devices, int) else 1
    return config.batch_size * max(1, devices) * max(1, config.num_nodes)


def tokens_per_window(context_length: int, horizon: int, token_length: int) -> int:
    """T: tokens (patches) in one training sequence."""
    return math.ceil(context_length / token_length) + math.ceil(horizon / token_length)


def epoch_steps(epochs: float, data_points: int, window: int, batch: int) -> int:
    """Steps for ``epochs`` passes over D points in windows of ``window`` points."""
    return max(1, math.ceil(epochs * data_points / window / batch))


def plan_run(
    spec: RunSpec,
    config: TrainConfig,
    *,
    data_points: int,
    total_points: int,
    window: int,
    window_tokens: int,
    n_params: int,
) -> RunPlan:
    """Steps and data of one run. ``data_points``: D of ``spec.data_budget`` (ignored for an
    IsoFLOP run); ``total_points``: all training points; ``n_params``: N (non-embedding)."""
    batch = global_batch(config)
    if spec.compute_budget is not None:
        tokens = spec.compute_budget / (6.0 * n_params)
        steps = max(1, math.ceil(tokens / (batch * window_tokens)))
        wanted = math.ceil(steps * batch * window / config.epochs)
        return RunPlan(int(min(total_points, max(window, wanted))), spec.steps or steps)
    if spec.steps is not None:
        return RunPlan(spec.data_budget, spec.steps)
    if config.schedule == "steps":
        return RunPlan(spec.data_budget, config.steps)
    return RunPlan(spec.data_budget, epoch_steps(config.epochs, data_points, window, batch))


def epochs_done(step: int, batch: int, window: int, data_points: int) -> float:
    """Passes over D after ``step`` optimiser steps (windows seen ÷ windows in D)."""
    return step * batch * window / max(1, data_points)


def attention_flops(n_params: int, layers: int, d_model: int, window_tokens: int) -> float:
    """FLOPs per token with attention: 6N + 12·L·d·T (Kaplan et al.; T tokens per sequence)."""
    return 6.0 * n_params + 12.0 * layers * d_model * window_tokens
