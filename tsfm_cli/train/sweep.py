"""The sweep: run a list of training runs and return their ``results.parquet`` rows.

Reusable entry points (``embed-bench`` builds on these; no second implementation):

- ``load_sweep_data(splits_dir, config)`` → ``SweepData``: the ood-split directory read once
  (training series, nested data budgets, evaluation windows per scenario × horizon).
- ``run_sweep(specs, data, config, runs_dir, reporter=None)`` → ``(rows, runs)``: trains every
  ``RunSpec`` (arch, size, data budget, seed, train_quality, embedding, normalisation, steps)
  that is not finished yet in ``runs_dir`` and returns all their result rows (one per run ×
  checkpoint × scenario × horizon; columns in README "tsfm train") and one summary row per run.

Each run lives in ``runs_dir/<run_id>/``: ``spec.json``, ``rows.parquet`` and ``windows.parquet``
(grow at every evaluated checkpoint; the second one row per evaluated window, read back with
``read_window_metrics``), ``last.ckpt`` (Lightning checkpoint, loaded with ``weights_only=True``)
and ``done.json`` once finished (``ok`` or ``failed`` with the reason). A finished run is never
redone; a killed one resumes from ``last.ckpt``. The run id hashes the spec, every setting that
changes results, and the sha256 of the input files read (content, never paths or times), so
changed inputs or settings mean new runs and the same data anywhere means the same ids.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from tsfm_cli import metrics
from tsfm_cli.errors import BadInputError
from tsfm_cli.groupkeys import finite_mean, group_key_schema
from tsfm_cli.models.config import ModelConfig
from tsfm_cli.models.embeddings import embedding_class
from tsfm_cli.models.forecaster import Forecaster, Window, check_arch
from tsfm_cli.models.scaling import get_scaler
from tsfm_cli.schema import METRICS
from tsfm_cli.stagedir import StageInput, open_stage, output_lock, sha256_file
from tsfm_cli.train.budget import (
    attention_flops,
    epochs_done,
    global_batch,
    plan_run,
    tokens_per_window,
)
from tsfm_cli.train.config import RunSpec, TrainConfig, is_global_zero
from tsfm_cli.train.data import (
    BatchSampler,
    DataBudget,
    EvalGroup,
    TrainSeries,
    degrade,
    load_eval,
    load_train,
    parse_quality,
)
from tsfm_cli.ui import Reporter
from tsfm_cli.windows import WindowArrays

# Settings that change a run's results (hashed into its id). Engineering settings (devices,
# strategy, precision, compile, shard, eval batch size) are not: shards on GPUs and a merge on a
# laptop must agree on the ids.
RESULT_SETTINGS = (
    "patch_size", "components", "schedule", "epochs", "steps", "batch_size", "lr", "min_lr",
    "weight_decay", "betas",
    "warmup_steps", "grad_clip", "context_length", "train_horizon", "checkpoints",
    "eval_windows", "eval_samples", "seed",
)  # fmt: skip

# The files of an ood-split directory a sweep reads: their sha256s are the input's identity.
SPLITS_READ = ("train.parquet", "eval.parquet", "scenarios.parquet")

RESULT_SCHEMA: dict[str, pl.DataType] = {
    "run_id": pl.String,
    "model": pl.String,
    "arch": pl.String,
    "embedding": pl.String,
    "normalisation": pl.String,
    "size": pl.String,
    "d_model": pl.Int64,
    "layers": pl.Int64,
    "heads": pl.Int64,
    "params": pl.Int64,
    "params_total": pl.Int64,
    "data_points": pl.Int64,
    "unique_points": pl.Int64,
    "train_quality": pl.String,
    "seed": pl.Int64,
    "schedule": pl.String,
    "compute_budget": pl.Float64,
    "step": pl.Int64,
    "steps": pl.Int64,
    "final": pl.Boolean,
    "epochs": pl.Float64,
    "tokens": pl.Int64,
    "flops": pl.Float64,
    "flops_attn": pl.Float64,
    "flops_fwd_batch": pl.Float64,
    "context_length": pl.Int64,
    "patch_size": pl.Int64,
    "split": pl.String,
    "scenario": pl.String,
    "kind": pl.String,
    "family": pl.String,
    "severity": pl.Float64,
    "horizon": pl.Int32,
    "n_windows": pl.Int64,
    "nll": pl.Float64,
    "crps": pl.Float64,
    "mse": pl.Float64,
    "mae": pl.Float64,
    "mase": pl.Float64,
    "train_loss": pl.Float64,
    "status": pl.String,
    "reason": pl.String,
}


@dataclass
class SweepData:
    """An ood-split directory read once for a whole sweep."""

    source: dict[str, Any]  # how the input is described (manifest hash): part of every run id
    series: TrainSeries
    budget: DataBudget
    groups: list[EvalGroup]
    eval_meta: pl.DataFrame  # the selected windows' small columns, in the store's row order
    eval_arrays: WindowArrays  # their values and masks (memory-mapped from the eval store)
    context_length: int
    horizons: list[int]
    train_horizon: int
    freq_s: float  # the most common sampling interval (for embeddings that want one)
    seed: int = 0  # the data seed
    notes: list[str] = field(default_factory=list)  # for the user, once (e.g. no val split)
    _degraded: dict[str, TrainSeries] = field(default_factory=dict, repr=False)

    def series_for(self, quality: str) -> TrainSeries:
        """Training series at one quality level (cached; the data seed fixes the degradation)."""
        if quality not in self._degraded:
            self._degraded[quality] = degrade(self.series, quality, self.seed)
        return self._degraded[quality]


def load_sweep_data(
    splits: Path | str | StageInput, config: TrainConfig, store_root: Path | None = None
) -> SweepData:
    """The ood-split directory read once; the training series and the selected evaluation
    windows memory-mapped from stores in ``store_root`` (train/store.py, train/eval_store.py;
    each built there once per input content and settings) or, without one, in memory."""
    stage = splits if isinstance(splits, StageInput) else open_stage(splits, "ood-split")
    notes: list[str] = []
    source = stage.describe(*SPLITS_READ)  # every file's bytes verified before it is read
    # the train store first: built after the eval store, its peak stacked on what that build's
    # allocators kept (measured: +110 MiB at 20 M values, benchmarks/scale_downstream.py)
    series = load_train(stage.file("train.parquet"), store_root, stage.sha256("train.parquet"))
    eval_meta, eval_arrays, groups = load_eval(
        stage.file("eval.parquet"),
        stage.path / "scenarios.parquet",  # load_eval skips it when absent
        config.eval_windows,
        config.seed,
        notes,
        store_root,
        stage.sha256("eval.parquet"),
    )
    n_ctx = groups[0].context_length
    if config.context_length is not None and config.context_length != n_ctx:
        raise BadInputError(
            f"train.context_length {config.context_length} differs from eval.parquet's context "
            f"length {n_ctx}; rerun ood-split or drop the key"
        )
    horizons = sorted({g.horizon for g in groups})
    train_horizon = config.train_horizon or max(horizons)
    budget = DataBudget.build(series, n_ctx + train_horizon, config.seed)
    freqs, counts = np.unique(series.freq_s, return_counts=True)
    return SweepData(
        source=source,
        series=series,
        budget=budget,
        groups=groups,
        eval_meta=eval_meta,
        eval_arrays=eval_arrays,
        context_length=n_ctx,
        horizons=horizons,
        train_horizon=train_horizon,
        freq_s=float(freqs[np.argmax(counts)]),
        seed=config.seed,
        notes=notes,
    )


def checkpoint_steps(steps: int, count: int) -> list[int]:
    """``count`` log-spaced steps ending at ``steps`` (from about steps / 2^(count-1))."""
    if count <= 1 or steps <= 1:
        return [steps]
    first = max(1.0, steps / 2 ** (count - 1))
    points = np.unique(np.round(np.geomspace(first, steps, count)).astype(int))
    return [int(p) for p in points]


def resolve_precision(config: TrainConfig) -> str:
    if config.precision:
        return config.precision
    gpu = torch.cuda.is_available() and config.accelerator in ("auto", "gpu", "cuda")
    return "bf16-mixed" if gpu else "32-true"


# --------------------------------------------------------------------------------------------
# Evaluation


@torch.no_grad()
def evaluate(
    model: Forecaster,
    groups: list[EvalGroup],
    n_samples: int,
    batch_size: int,
    seed: int,
    device: torch.device | str = "cpu",
    with_windows: bool = False,
):
    """Metrics of ``model`` on every split × scenario × horizon group (README "Metrics").

    nll: teacher-forced NLL per observed target point, instance-scaled; crps: sample CRPS of
    ``n_samples`` samples (decoder: autoregressive sample paths); mse/mae/mase: of the per-point
    median of the samples. Each metric is averaged per window, then over windows.
    → rows; with ``with_windows`` → (rows, one frame of per-window metrics with each window's
    identity columns).
    """
    windows: list[pl.DataFrame] = []
    was_training = model.training
    model.eval()
    rows = []
    devices = [device] if str(device).startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for group in groups:
            per_window: dict[str, list[np.ndarray]] = {m: [] for m in METRICS}
            n_ctx = group.context_length
            for lo in range(0, group.n_windows, batch_size):
                batch = group.batch(lo, lo + batch_size)  # read from the store batch by batch
                window = Window(
                    torch.from_numpy(np.concatenate([batch["context"], batch["target"]], 1)).to(
                        device
                    ),
                    torch.from_numpy(
                        np.concatenate([batch["context_observed"], batch["target_observed"]], 1)
                    ).to(device),
                    n_ctx,
                    torch.from_numpy(batch["times"]).to(device),
                )
                out = {
                    k: v.float().cpu().numpy() for k, v in model.forecast(window, n_samples).items()
                }
                obs = batch["target_observed"]
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    per_window["nll"].append(np.nanmean(out["nll"], axis=1))
                    per_window["crps"].append(
                        metrics.crps_from_samples(out["samples"], out["target"], obs)
                    )
                    per_window["mse"].append(metrics.mse(out["median"], out["target"], obs))
                    per_window["mae"].append(metrics.mae(out["median"], out["target"], obs))
                    seasons = np.array([metrics.season_length(f, n_ctx) for f in batch["freq_s"]])
                    per_window["mase"].append(
                        _mase_per_season(out, obs, batch["context_observed"], seasons)
                    )
            row = group.describe()
            per_metric = {}
            for name, parts in per_window.items():
                values = np.concatenate(parts).astype(np.float64)
                per_metric[name] = np.where(np.isfinite(values), values, np.nan)
                row[name] = finite_mean(values)
            rows.append(row)
            rows += group.breakdown(per_window)  # per line / machine … (tsfm_cli/groupkeys.py)
            if with_windows:
                labels = {k: row[k] for k in ("split", "scenario", "kind", "family", "horizon")}
                windows.append(
                    group.windows.with_columns(
                        *(pl.lit(v).alias(k) for k, v in labels.items()),
                        *(pl.Series(k, v).fill_nan(None) for k, v in per_metric.items()),
                    )
                )
    model.train(was_training)
    if with_windows:
        return rows, pl.concat(windows, how="diagonal_relaxed") if windows else pl.DataFrame()
    return rows


def _mase_per_season(
    out: dict[str, np.ndarray],
    observed: np.ndarray,
    context_observed: np.ndarray,
    seasons: np.ndarray,
) -> np.ndarray:
    """MASE per window: one batched `metrics.mase` per distinct season (a group's windows
    nearly always share one) instead of one call per window."""
    result = np.empty(len(seasons), dtype=np.float64)
    for season in np.unique(seasons):
        rows = seasons == season
        result[rows] = metrics.mase(
            out["median"][rows],
            out["target"][rows],
            observed[rows],
            out["context"][rows],
            context_observed[rows],
            int(season),
        )
    return result


def measure_forward_flops(model: Forecaster, window: Window) -> float:
    """Forward FLOPs of one batch, counted by ``torch.utils.flop_counter`` (matmuls/attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.loss(window)
    return float(counter.get_total_flops())


# --------------------------------------------------------------------------------------------
# One run


def _write_parquet_atomic(frame: pl.DataFrame, path: Path) -> None:
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    frame.write_parquet(tmp)
    os.replace(tmp, path)


def _write_json_atomic(value: Any, path: Path) -> None:
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(value, indent=2, default=str) + "\n")
    os.replace(tmp, path)


# window_metrics.parquet: one row per run × step × split × scenario × horizon × window, the
# metrics of that window alone (README "tsfm train"), plus the window's group-key columns
WINDOW_SCHEMA: dict[str, pl.DataType] = {
    "run_id": pl.String,
    "model": pl.String,
    "arch": pl.String,
    "size": pl.String,
    "params": pl.Int64,
    "data_points": pl.Int64,
    "train_quality": pl.String,
    "seed": pl.Int64,
    "step": pl.Int64,
    "final": pl.Boolean,
    "tokens": pl.Int64,
    "flops": pl.Float64,
    "split": pl.String,
    "scenario": pl.String,
    "kind": pl.String,
    "family": pl.String,
    "horizon": pl.Int32,
    "series_id": pl.String,
    "window_id": pl.Int64,
    **{m: pl.Float64 for m in METRICS},
}


def window_rows(windows: pl.DataFrame, labels: dict[str, Any]) -> pl.DataFrame:
    """evaluate's per-window frame + the run and checkpoint labels → WINDOW_SCHEMA columns
    first (cast), then the group-key columns as they came."""
    absent = [k for k in WINDOW_SCHEMA if k not in windows.columns]
    frame = windows.with_columns(pl.lit(labels.get(k)).alias(k) for k in absent)
    fixed = [pl.col(k).cast(t) for k, t in WINDOW_SCHEMA.items()]
    extra = [c for c in frame.columns if c not in WINDOW_SCHEMA]
    return frame.select(*fixed, *extra)


def read_window_metrics(runs_dir: Path | str, run_ids: list[str]) -> pl.DataFrame:
    """The per-window metrics of the given runs (their ``windows.parquet``), one frame."""
    parts = [
        pl.read_parquet(path)
        for run_id in run_ids
        if (path := Path(runs_dir) / run_id / "windows.parquet").is_file()
    ]
    if not parts:
        return pl.DataFrame(schema=WINDOW_SCHEMA)
    return pl.concat(parts, how="diagonal_relaxed")


def rows_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    schema = {**RESULT_SCHEMA, **group_key_schema(rows)}
    return pl.DataFrame([{k: row.get(k) for k in schema} for row in rows], schema=schema)


class _Run:
    """Training and evaluation of one RunSpec inside its run directory."""

    def __init__(
        self, spec, data: SweepData, config: TrainConfig, run_dir: Path, task, warn=None
    ) -> None:
        self.spec, self.data, self.config, self.dir, self.task = spec, data, config, run_dir, task
        self.warn = warn or Reporter().warn
        self.cfg: ModelConfig = spec.model_config
        self.window = data.context_length + data.train_horizon
        self.rows: list[dict[str, Any]] = []
        self.windows: list[pl.DataFrame] = []
        self.base: dict[str, Any] = {}

    def plan(self, model: Forecaster) -> None:
        """The run's steps and data (README "Schedule") → ``self.steps``, ``self.sampler``."""
        spec, data = self.spec, self.data
        self.window_tokens = tokens_per_window(
            data.context_length, data.train_horizon, model.token_length
        )
        run_plan = plan_run(
            spec,
            self.config,
            data_points=sum(seg.length for seg in data.budget.take(spec.data_budget)),
            total_points=data.budget.total_points,
            window=self.window,
            window_tokens=self.window_tokens,
            n_params=model.num_params()[0],
        )
        self.steps = run_plan.steps
        self.sampler = BatchSampler(
            data.series_for(spec.train_quality),
            data.budget.take(run_plan.data_request),
            self.window,
            self.config.batch_size,
            spec.seed,
        )

    def model(self) -> Forecaster:
        torch.manual_seed(self.spec.seed)
        return Forecaster(
            self.spec.arch,
            self.cfg,
            patch_size=self.config.patch_size,
            embedding=self.spec.embedding,
            normalisation=self.spec.normalisation,
            components=self.config.components,
            freq_s=self.data.freq_s,
        )

    def run(self, run_id: str) -> dict[str, Any]:
        import pytorch_lightning as L

        from tsfm_cli.train.module import Diverged, ForecastModule, StepBatches, SweepCallback

        config, spec = self.config, self.spec
        model = self.model()
        n_params, n_total = model.num_params()
        self.plan(model)
        per_token_attn = attention_flops(
            n_params, self.cfg.layers, self.cfg.d_model, self.window_tokens
        )
        batch = global_batch(config)
        horizons = [h for h in self.data.horizons if h <= self.data.train_horizon] or [
            self.data.train_horizon
        ]
        module = ForecastModule(model, config, self.steps, self.data.context_length, horizons)
        first = self.sampler.batch(0)
        flops_fwd = measure_forward_flops(
            model, module.window({k: torch.as_tensor(v) for k, v in first.items()})
        )
        self.base = {
            "run_id": run_id,
            "model": "transformer",
            "arch": spec.arch,
            "embedding": spec.embedding,
            "normalisation": spec.normalisation,
            "size": self.cfg.name,
            "d_model": self.cfg.d_model,
            "layers": self.cfg.layers,
            "heads": self.cfg.heads,
            "params": n_params,
            "params_total": n_total,
            "data_points": self.sampler.data_points,
            "unique_points": self.sampler.data_points,
            "train_quality": spec.train_quality,
            "seed": spec.seed,
            "schedule": "isoflop" if spec.compute_budget is not None else config.schedule,
            "compute_budget": spec.compute_budget,
            "steps": self.steps,
            "flops_fwd_batch": flops_fwd,
            "context_length": self.data.context_length,
            "patch_size": model.token_length,
        }
        ckpt = self.dir / "last.ckpt"
        rows_path = self.dir / "rows.parquet"
        windows_path = self.dir / "windows.parquet"
        resume_step = self._resume_point(ckpt, rows_path, windows_path)
        if resume_step == 0:
            ckpt = None
        if config.compile:
            model.backbone = torch.compile(model.backbone)
        eval_at = set(checkpoint_steps(self.steps, config.checkpoints))
        zero = is_global_zero(config)

        def at_checkpoint(step: int, tokens: int) -> dict[str, Any]:
            """The columns that say where in its schedule a row was measured."""
            return {
                "step": step,
                "final": step == self.steps,
                "epochs": epochs_done(step, batch, self.window, self.sampler.data_points),
                "tokens": tokens,
                "flops": 6.0 * n_params * tokens,
                "flops_attn": per_token_attn * tokens,
            }

        def on_eval(trainer, mod, step: int) -> None:
            if not trainer.is_global_zero:
                return
            found, windows = evaluate(
                mod.model,
                self.data.groups,
                config.eval_samples,
                config.eval_batch_size,
                config.seed,
                mod.device,
                with_windows=True,
            )
            at = at_checkpoint(step, mod.tokens)
            for row in found:
                self.rows.append(
                    {
                        **self.base,
                        **row,
                        **at,
                        "train_loss": mod.loss_ema,
                        "status": "ok",
                        "reason": None,
                    }
                )
            self.windows.append(window_rows(windows, {**self.base, **at}))
            # windows first: a crash between the two writes leaves rows that resume cleanly
            _write_parquet_atomic(pl.concat(self.windows, how="diagonal_relaxed"), windows_path)
            _write_parquet_atomic(rows_frame(self.rows), rows_path)

        def save(trainer) -> None:
            tmp = self.dir / "last.ckpt.tmp"
            try:
                trainer.save_checkpoint(tmp)
            except RuntimeError as exc:
                raise checkpoint_write_error(exc, tmp) from exc
            if trainer.is_global_zero:
                os.replace(tmp, self.dir / "last.ckpt")

        def report(step: int, loss: float, tok_s: float) -> None:
            self.task.update(
                status=f"{run_id[:40]} step {step}/{self.steps} loss {loss:.3f} {tok_s:,.0f} tok/s"
            )

        callback = SweepCallback(eval_at, on_eval, save, config.checkpoint_every_s, report)
        loader = torch.utils.data.DataLoader(
            StepBatches(
                self.sampler, lambda: int(module.global_step), lambda: int(module.global_rank)
            ),
            batch_size=None,
            num_workers=0,
        )
        started = time.monotonic()
        status, reason = "ok", None
        with _quiet_lightning():
            trainer = L.Trainer(
                accelerator=config.accelerator,
                devices=config.devices,
                num_nodes=config.num_nodes,
                strategy=config.strategy,
                precision=resolve_precision(config),
                max_steps=self.steps,
                gradient_clip_val=config.grad_clip,
                callbacks=[callback],
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                num_sanity_val_steps=0,
                default_root_dir=str(self.dir),
            )
            try:
                trainer.fit(module, loader, ckpt_path=ckpt, weights_only=True)
            except Diverged as exc:
                status, reason = "failed", str(exc)
            except (RuntimeError, ValueError, FloatingPointError) as exc:
                if "nan" not in str(exc).lower() and "inf" not in str(exc).lower():
                    raise
                status, reason = "failed", f"{type(exc).__name__}: {exc}"
        if status == "ok" and trainer.global_step < self.steps:
            # Lightning turns Ctrl-C into a "graceful" return: the run is not finished, and
            # its last checkpoint is where the next invocation resumes.
            raise KeyboardInterrupt
        elapsed = time.monotonic() - started
        step = int(trainer.global_step)
        if status == "failed" and zero:
            for group in self.data.groups:
                self.rows.append(
                    {
                        **self.base,
                        **group.describe(),
                        **at_checkpoint(step, module.tokens),
                        "status": "failed",
                        "reason": reason,
                    }
                )
            _write_parquet_atomic(rows_frame(self.rows), rows_path)
        tokens_run = module.tokens - (resume_step and self._tokens_at(resume_step))
        done = {
            "run_id": run_id,
            "status": status,
            "reason": reason,
            "steps": step,
            "resumed_from": resume_step,
            "tokens": module.tokens,
            "seconds": elapsed,
            "tokens_per_s": tokens_run / elapsed if elapsed > 0 else None,
            "precision": resolve_precision(config),
            "params": n_params,
            "params_total": n_total,
        }
        if zero:
            if rows_path.is_file():  # verified before the run's rows are reused
                done["rows_sha256"] = sha256_file(rows_path)
            if windows_path.is_file():
                done["windows_sha256"] = sha256_file(windows_path)
            _write_json_atomic(done, self.dir / "done.json")
            with contextlib.suppress(FileNotFoundError):
                (self.dir / "last.ckpt").unlink()  # finished: rows are what is kept
        return done

    def _resume_point(self, ckpt: Path, rows_path: Path, windows_path: Path) -> int:
        """The step a killed run resumes from (0: from scratch), its rows reloaded. A checkpoint
        or rows file that cannot be read is named, discarded, and the run starts again: a
        damaged file must not fail every rerun forever."""
        if not ckpt.is_file():
            return 0
        reading = ckpt
        try:
            meta = torch.load(ckpt, map_location="cpu", weights_only=True)
            resume_step = int(meta.get("global_step", 0))
            del meta
            if rows_path.is_file():
                reading = rows_path
                old = pl.read_parquet(rows_path).filter(pl.col("step") <= resume_step)
                self.rows = old.to_dicts()
            if windows_path.is_file():
                reading = windows_path
                old = pl.read_parquet(windows_path).filter(pl.col("step") <= resume_step)
                self.windows = [old]
            return resume_step
        except Exception as exc:  # noqa: BLE001 - any damage (EOFError, zip, pickle, parquet)
            self.warn(
                f"{reading}: unreadable ({type(exc).__name__}); discarded, the run restarts "
                "from step 0"
            )
            ckpt.unlink(missing_ok=True)
            rows_path.unlink(missing_ok=True)
            windows_path.unlink(missing_ok=True)
            self.rows, self.windows = [], []
            return 0

    def _tokens_at(self, step: int) -> int:
        for row in reversed(self.rows):
            if row.get("step") == step and row.get("tokens") is not None:
                return int(row["tokens"])
        return 0


@contextlib.contextmanager
def _quiet_lightning():
    """Lightning's info lines ("GPU available …") and its data-loader hints are noise here."""
    names = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        hints = "does not have many workers|IterableDataset|GPU available|TPU available"
        warnings.filterwarnings("ignore", message=f".*({hints}).*")
        warnings.filterwarnings("ignore", category=UserWarning, module="pytorch_lightning.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


# --------------------------------------------------------------------------------------------
# Many runs


def run_settings(config: TrainConfig, data: SweepData) -> dict[str, Any]:
    settings = {key: getattr(config, key) for key in RESULT_SETTINGS}
    settings["context_length"] = data.context_length
    settings["train_horizon"] = data.train_horizon
    settings["input"] = data.source.get("content")  # sha256 of the files read: content only
    return settings


def run_sweep(
    specs: list[RunSpec],
    data: SweepData,
    config: TrainConfig,
    runs_dir: Path | str,
    *,
    reporter: Reporter | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Train and evaluate every spec (skipping finished ones) → (results rows, one row per run).

    ``config`` supplies everything a spec does not (steps when ``spec.steps`` is None, batch,
    schedule, evaluation, devices). Specs are validated before anything trains.
    """
    reporter = reporter or Reporter()
    if config.cpu_threads:
        torch.set_num_threads(config.cpu_threads)
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    settings = run_settings(config, data)
    for spec in specs:
        validate_spec(spec)
    all_rows: list[pl.DataFrame] = []
    summaries: list[dict[str, Any]] = []
    with reporter.progress("train", total=len(specs), unit="runs") as task:
        for spec in specs:
            run_id = spec.run_id(settings)
            run_dir = runs_dir / run_id
            run_dir.mkdir(exist_ok=True)
            done_path = run_dir / "done.json"
            trained = False
            zero = is_global_zero(config)
            damage = finished_run_damage(run_dir) if zero else None
            if damage:
                reporter.warn(f"{damage}; the run is trained again")
                for name in ("done.json", "rows.parquet", "last.ckpt"):
                    (run_dir / name).unlink(missing_ok=True)
            if not done_path.is_file():
                # one process per run directory; DDP ranks > 0 follow rank 0 without the lock
                lock = output_lock(run_dir, wait_s=0.0) if zero else contextlib.nullcontext()
                with lock:
                    if not done_path.is_file():
                        if zero:
                            _write_json_atomic(
                                {"run_id": run_id, "spec": asdict(spec), "settings": settings},
                                run_dir / "spec.json",
                            )
                        done = _Run(spec, data, config, run_dir, task, reporter.warn).run(run_id)
                        trained = True
                        if done["status"] == "failed":
                            reporter.warn(f"run {run_id} failed: {done['reason']}")
            task.advance()
            if not done_path.is_file():  # a non-zero DDP rank: rank 0 writes the results
                continue
            done = json.loads(done_path.read_text())
            summaries.append(
                {
                    "run_id": run_id,
                    "arch": spec.arch,
                    "size": spec.model_config.name,
                    "params": done.get("params"),
                    "status": done["status"],
                    "reason": done.get("reason"),
                    "steps": done.get("steps"),
                    "resumed_from": done.get("resumed_from"),
                    "seconds": done.get("seconds"),
                    "tokens_per_s": done.get("tokens_per_s"),
                    "precision": done.get("precision"),
                    "trained_now": trained,
                }
            )
            rows_path = run_dir / "rows.parquet"
            if rows_path.is_file():
                all_rows.append(pl.read_parquet(rows_path))
    rows = pl.concat(all_rows, how="diagonal") if all_rows else rows_frame([])
    return rows, pl.DataFrame(summaries, infer_schema_length=None)


def checkpoint_write_error(exc: RuntimeError, path: Path) -> BaseException:
    """torch's checkpoint writer reports a full disk as a RuntimeError without an errno
    ("PytorchStreamWriter failed writing file …: file write failed"): turned into the OSError the
    CLI names as disk full (one line, exit 1), the partial file removed. Other errors unchanged."""
    text = str(exc)
    if "write failed" not in text and os.strerror(errno.ENOSPC) not in text:
        return exc
    Path(path).unlink(missing_ok=True)
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def finished_run_damage(run_dir: Path) -> str | None:
    """What is wrong with a finished run's files (None if not finished or intact): its
    done.json unreadable, or its rows.parquet not the bytes done.json recorded."""
    done_path = run_dir / "done.json"
    if not done_path.is_file():
        return None
    try:
        done = json.loads(done_path.read_text())
    except (OSError, ValueError) as exc:
        return f"{done_path}: unreadable ({type(exc).__name__})"
    if not isinstance(done, dict):
        return f"{done_path}: unreadable (not an object)"
    for name in ("rows", "windows"):
        recorded = done.get(f"{name}_sha256")
        path = run_dir / f"{name}.parquet"
        if recorded is None:
            continue  # written before the file was hashed, or a run without it
        if not path.is_file():
            return f"{path}: missing"
        if sha256_file(path) != recorded:
            return f"{path}: changed since written (sha256 differs)"
    return None


def validate_spec(spec: RunSpec) -> None:
    """The registries' own checks (arch, embedding, normalisation, size, quality), as
    BadInputError before anything trains."""
    try:
        check_arch(spec.arch)
        embedding_class(spec.embedding)
        get_scaler(spec.normalisation)
        spec.model_config  # noqa: B018 - validates the size
        parse_quality(spec.train_quality)
    except ValueError as exc:
        raise BadInputError(str(exc)) from None
