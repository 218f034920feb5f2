"""The LightningModule that trains one ``Forecaster`` and the callback that evaluates it.

Lightning does the engineering (devices, DDP, precision, gradient clipping, checkpoints); this
module only says what one step is: a batch of windows → masked NLL. A non-finite loss raises
``Diverged`` so that the sweep records the run as failed and goes on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import pytorch_lightning as L
import torch

from tsfm_cli.models.forecaster import Forecaster, Window
from tsfm_cli.train.config import TrainConfig
from tsfm_cli.train.data import BatchSampler


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


class StepBatches(torch.utils.data.IterableDataset):
    """Endless batches; batch k comes from the sampler's ``batch(k)``. ``start()`` is read when
    iteration begins, i.e. after Lightning restored a checkpoint, so a resumed run continues
    with exactly the batches an uninterrupted one would have used."""

    def __init__(
        self, sampler: BatchSampler, start: Callable[[], int], rank: Callable[[], int] = lambda: 0
    ) -> None:
        self.sampler, self.start, self.rank = sampler, start, rank

    def __iter__(self):
        step, rank = self.start(), self.rank()
        while True:
            yield self.sampler.batch(step, rank)
            step += 1


def lr_lambda(warmup: int, total: int, floor: float) -> Callable[[int], float]:
    """Linear warm-up, then cosine decay to ``floor`` (a fraction of the peak) at ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


class ForecastModule(L.LightningModule):
    def __init__(
        self,
        model: Forecaster,
        config: TrainConfig,
        steps: int,
        n_context: int,
        horizons: list[int],
    ) -> None:
        super().__init__()
        self.model, self.config, self.steps = model, config, steps
        self.n_context, self.horizons = n_context, sorted(horizons)
        self.tokens = 0  # patches processed so far, all devices together
        self.loss_ema: float | None = None

    def window(self, batch: dict[str, torch.Tensor]) -> Window:
        values, observed, times = batch["values"], batch["observed"], batch["times"]
        if self.model.arch == "encoder":  # one of the horizons per batch, the rest cropped
            pick = float(batch["pick"])
            horizon = self.horizons[min(len(self.horizons) - 1, int(pick * len(self.horizons)))]
            end = self.n_context + horizon
            values, observed, times = values[:, :end], observed[:, :end], times[:, :end]
        return Window(values.float(), observed.bool(), self.n_context, times.double())

    def batch_tokens(self, window: Window) -> int:
        p = self.model.token_length
        per_row = math.ceil(window.n_context / p) + math.ceil(window.horizon / p)
        return window.values.shape[0] * per_row

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        window = self.window(batch)
        loss, _ = self.model.loss(window)
        if not torch.isfinite(loss):
            raise Diverged(f"loss became {loss.item()} at step {self.global_step}")
        self.tokens += self.batch_tokens(window) * self.trainer.world_size
        return loss

    def configure_optimizers(self):
        decay, no_decay = [], []
        for param in self.model.parameters():
            (decay if param.dim() >= 2 else no_decay).append(param)
        cfg = self.config
        optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": cfg.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=cfg.lr,
            betas=tuple(cfg.betas),
        )
        warmup = min(cfg.warmup_steps, max(1, self.steps // 10))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lr_lambda(warmup, self.steps, cfg.min_lr / cfg.lr)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["tsfm"] = {"tokens": int(self.tokens)}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.tokens = int(checkpoint.get("tsfm", {}).get("tokens", 0))


class SweepCallback(L.Callback):
    """Evaluates at the chosen steps, saves resumable checkpoints, reports progress."""

    def __init__(
        self,
        eval_steps: set[int],
        on_eval: Callable[[L.Trainer, ForecastModule, int], None],
        save: Callable[[L.Trainer], None],
        every_s: float,
        report: Callable[[int, float, float], None],
    ) -> None:
        self.eval_steps, self.on_eval, self.save = eval_steps, on_eval, save
        self.every_s, self.report = every_s, report
        self.last_save = time.monotonic()
        self.started = time.monotonic()
        self.start_tokens: int | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.start_tokens is None:
            self.start_tokens = pl_module.tokens
        if step % 10 == 0 or step in self.eval_steps:
            loss = float(outputs["loss"].detach()) if isinstance(outputs, dict) else float("nan")
            ema = pl_module.loss_ema
            pl_module.loss_ema = loss if ema is None else 0.7 * ema + 0.3 * loss
            elapsed = max(time.monotonic() - self.started, 1e-9)
            self.report(step, pl_module.loss_ema, (pl_module.tokens - self.start_tokens) / elapsed)
        if step in self.eval_steps:
            self.on_eval(trainer, pl_module, step)
            self.save(trainer)
            self.last_save = time.monotonic()
        elif time.monotonic() - self.last_save > self.every_s:
            self.save(trainer)
            self.last_save = time.monotonic()
