"""`tsfm train`: a sweep of training runs (arch × size × data × seed × data quality) with
PyTorch Lightning, evaluated at log-spaced checkpoints on every scenario × horizon of an
ood-split directory → ``results.parquet``.

Entry points: ``run_train`` (the stage); for reuse (embed-bench): ``load_sweep_data``,
``run_sweep``, ``RunSpec``, ``TrainConfig``, ``grid``, ``evaluate`` (see ``sweep.py``).
Importing this package imports torch and polars; the CLI imports it inside the command.
"""

from tsfm_cli.train.config import RunSpec, TrainConfig, grid, parse_shard, shard
from tsfm_cli.train.stage import run_train
from tsfm_cli.train.sweep import evaluate, load_sweep_data, run_sweep

__all__ = [
    "RunSpec",
    "TrainConfig",
    "evaluate",
    "grid",
    "load_sweep_data",
    "parse_shard",
    "run_sweep",
    "run_train",
    "shard",
]
