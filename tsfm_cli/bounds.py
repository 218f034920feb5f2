"""The allowed range of every numeric setting (recipe key or CLI option), checked by
`recipe.build_config` with the key's name, so that `--bootstrap 1e11` or `spike_window: 1e20`
is one clear line (exit 2), not hours of work or an internal error.

Keyed by the settings dataclass's name and field; for a list or mapping setting (`horizons`,
`ranges`, `sizes`), every number inside it is checked. A numeric setting not listed here
still has to be finite and within ±`DEFAULT_LIMIT`. README "Setting bounds" lists the table.
"""

from __future__ import annotations

import math
from typing import Any

DEFAULT_LIMIT = 1e15
SEED = (0, 2**32 - 1)
STEPS = (1, 1_000_000_000)
LENGTH = (1, 1_000_000)  # points of a context, horizon or window
PATCH = (1, 65_536)
DEVICES = (-1, 4096)  # Lightning: -1 = every device
THREADS = (1, 1024)
MODEL_DIM = (1, 100_000)  # d_model, layers, heads of a size given as a mapping
DATA_BUDGET = (0, 1e13)  # a fraction ≤ 1 or a count of training points
LR = (0, 10)

BOUNDS: dict[str, dict[str, tuple[float, float]]] = {
    "IngestConfig": {
        "skip_lines": (0, 100_000),
        "spike_window": (3, 10_001),
        "spike_threshold": (0, 1e6),
        "stuck_points": (0, 1_000_000_000),
        "max_gap": (0, 10_000_000),
        "max_missing": (0, 1),
        "ranges": (-1e30, 1e30),
        "max_line_bytes": (64, 64 * 2**20),
        "max_columns": (2, 100_000),
    },
    "OodConfig": {
        "context_length": LENGTH,
        "horizons": LENGTH,
        "patch_size": (0, 65_536),  # 0: no multiple-of-patch check
        "stride": (1, 1_000_000_000),
        "max_windows": (1, 10_000_000),
        "synthetic_windows": (0, 1_000_000),
        "min_observed": (0, 1),
        "id_start": (0, 1),
        "train_end": (0, 1),
        "future_start": (0, 1),
        "val_fraction": (0, 0.99),
        "severities": (0, 1000),
        "seed": SEED,
    },
    "EmbedBenchConfig": {
        "n_seeds": (1, 1000),
        "seed": SEED,
        "size": MODEL_DIM,
        "patch_size": PATCH,
        "data_budget": DATA_BUDGET,
        "context_length": LENGTH,
        "steps": STEPS,
        "batch_size": (1, 1_000_000),
        "lr": LR,
        "warmup_steps": (0, 1_000_000_000),
        "eval_windows": (1, 10_000_000),
        "eval_samples": (1, 100_000),
        "scale": (0, 10_000),
        "param_tolerance": (0, 1),
        "max_param_spread": (0, 10),
        "devices": DEVICES,
        "cpu_threads": THREADS,
    },
    "TrainConfig": {
        "sizes": MODEL_DIM,
        "data_budgets": DATA_BUDGET,
        "seeds": SEED,
        "patch_size": PATCH,
        "components": (1, 256),
        "steps": STEPS,
        "epochs": (1e-6, 1e6),
        "compute_budgets": (1, 1e40),
        "batch_size": (1, 1_000_000),
        "lr": LR,
        "min_lr": LR,
        "weight_decay": (0, 10),
        "betas": (0, 1),
        "warmup_steps": (0, 1_000_000_000),
        "grad_clip": (0, 1e6),
        "context_length": LENGTH,
        "train_horizon": LENGTH,
        "checkpoints": (1, 10_000),
        "eval_windows": (1, 10_000_000),
        "eval_samples": (1, 100_000),
        "eval_batch_size": (1, 1_000_000),
        "checkpoint_every_s": (0, 1e7),
        "devices": DEVICES,
        "num_nodes": (1, 4096),
        "cpu_threads": THREADS,
        "seed": SEED,
    },
    "FitConfig": {
        "n_boot": (0, 100_000),
        "level": (0.5, 0.9999),
        "seed": SEED,
        "target_factor": (1, 1e6),
        "budget_flops": (1, 1e40),
        "target_loss": (-1e6, 1e6),
        "max_extrapolation": (1, 1e12),
        "data_available": (1, 1e30),
        "workers": (0, 1024),
    },
}


def numbers_in(value: Any):
    """The numbers in a setting's value (itself, or inside lists and mappings); not booleans."""
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from numbers_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from numbers_in(item)


def show(x: float) -> str:
    """A bound as people read it: 10,001, 0.5, 1e+40."""
    return f"{int(x):,}" if float(x).is_integer() and abs(x) < 1e16 else f"{x:g}"


def out_of_bounds(config_name: str, key: str, value: Any) -> str | None:
    """Why `value` is not allowed for `key` of settings class `config_name`, or None if it is."""
    bound = BOUNDS.get(config_name, {}).get(key)
    for number in numbers_in(value):
        if bound is None:
            if not (math.isfinite(number) and abs(number) <= DEFAULT_LIMIT):
                return f"{number!r} is out of range (a finite number within ±{DEFAULT_LIMIT:g})"
            continue
        low, high = bound
        if not low <= number <= high:  # NaN fails too
            return f"{number!r} is out of range (allowed {show(low)} … {show(high)})"
    return None
