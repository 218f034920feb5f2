"""`tsfm train`: a sweep of training runs (arch × size × data × seed × data quality) with
PyTorch Lightning, evaluated at log-spaced checkpoints on every scenario × horizon of an
ood-split directory → ``results.parquet``.

Entry points: ``run_train`` (the stage); for reuse (embed-bench): ``load_sweep_data``,
``run_sweep``, ``RunSpec``, ``TrainConfig``, ``grid``, ``evaluate`` (see ``sweep.py``).
Names are loaded lazily: ``tsfm_cli.train.config`` alone does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "RunSpec": "config",
    "TrainConfig": "config",
    "grid": "config",
    "parse_shard": "config",
    "shard": "config",
    "run_train": "stage",
    "evaluate": "sweep",
    "load_sweep_data": "sweep",
    "run_sweep": "sweep",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"tsfm_cli.train.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'tsfm_cli.train' has no attribute {name!r}")
