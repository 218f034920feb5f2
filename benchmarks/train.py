"""Throughput of `tsfm train` versus a bare PyTorch loop on the same model, batch and data.

    python benchmarks/train.py                       # CPU, model 100K (64/2), batch 64
    python benchmarks/train.py --device cuda --size 10M --batch 256 --steps 200

Both sides train the same Forecaster from the same seed on the same batches (the sweep's
BatchSampler), with AdamW, warm-up + cosine and gradient clipping. `tsfm` is measured end to end
through ``run_sweep`` (Lightning Trainer, data loading, FLOP counting, one final evaluation on a
single window per scenario × horizon and the checkpoint), so its overhead includes all of that;
"lightning" is the same Trainer and data loading without the sweep's evaluation and checkpoints.
Goal: Lightning + data loading overhead under 15 %. MFU = 6·N-style training FLOPs per token
(nanoGPT's estimate) × tokens/s ÷ peak: on CPU the peak is *measured* (a large fp32 matmul on
the same threads), on GPU the bf16 dense peak passed with --peak-tflops (H100/H200: 989).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from tests.splits_fixture import make_splits  # noqa: E402
from tsfm_cli.models.backbone import estimate_mfu  # noqa: E402
from tsfm_cli.train.config import TrainConfig, grid  # noqa: E402
from tsfm_cli.train.module import ForecastModule  # noqa: E402
from tsfm_cli.train.sweep import _Run, load_sweep_data, run_sweep  # noqa: E402


def measured_peak_flops(device: str, seconds: float = 1.0) -> float:
    n = 1024 if device == "cpu" else 8192
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    if device != "cpu":
        torch.cuda.synchronize()
    return 2 * n**3 * count / (time.perf_counter() - start)


def bare_loop(run: _Run, module: ForecastModule, steps: int, device: str) -> tuple[float, int]:
    """The same training as Lightning does, by hand. Returns (seconds, tokens)."""
    model = module.model.to(device)
    opt = module.configure_optimizers()
    optimizer, schedule = opt["optimizer"], opt["lr_scheduler"]["scheduler"]
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device != "cpu"
        else torch.autocast("cpu", enabled=False)
    )
    tokens = 0
    if device != "cpu":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for step in range(steps):
        batch = {k: torch.as_tensor(v).to(device) for k, v in run.sampler.batch(step).items()}
        window = module.window(batch)
        with autocast:
            loss, _ = model.loss(window)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        tokens += module.batch_tokens(window)
    if device != "cpu":
        torch.cuda.synchronize()
    return time.perf_counter() - start, tokens


def lightning_loop(run: _Run, module: ForecastModule, steps: int, cfg: TrainConfig) -> float:
    """Lightning + the sweep's data loading alone (same Trainer flags, no evaluation/checkpoints).
    Returns seconds."""
    import pytorch_lightning as L

    from tsfm_cli.train.module import StepBatches
    from tsfm_cli.train.sweep import _quiet_lightning, resolve_precision

    loader = torch.utils.data.DataLoader(
        StepBatches(run.sampler, lambda: int(module.global_step)), batch_size=None, num_workers=0
    )
    with _quiet_lightning():
        trainer = L.Trainer(
            accelerator=cfg.accelerator, devices=1, precision=resolve_precision(cfg),
            max_steps=steps, gradient_clip_val=cfg.grad_clip, logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        )  # fmt: skip
        start = time.perf_counter()
        trainer.fit(module, loader)
    if cfg.accelerator == "gpu":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="100K")
    parser.add_argument("--arch", default="decoder")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--horizon", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--peak-tflops", type=float, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gpu = args.device != "cpu"

    with tempfile.TemporaryDirectory() as tmp:
        splits = make_splits(
            Path(tmp) / "splits", n_series=8, train_length=4000, context=args.context,
            horizons=(args.horizon,), windows=1,
        )  # fmt: skip
        cfg = TrainConfig(
            archs=[args.arch], sizes=[args.size], steps=args.steps, batch_size=args.batch,
            checkpoints=1, eval_windows=1, eval_samples=2, warmup_steps=10,
            accelerator="gpu" if gpu else "cpu", precision="bf16-mixed" if gpu else "32-true",
        )  # fmt: skip
        data = load_sweep_data(splits, cfg)
        spec = grid(cfg)[0]
        tsfm_tps, bare_tps, lightning_tps = [], [], []
        for repeat in range(args.repeats):
            # tsfm: the real sweep path, end to end (fresh runs dir, so it trains)
            start = time.perf_counter()
            _, runs = run_sweep([spec], data, replace(cfg), Path(tmp) / f"runs{repeat}")
            seconds = time.perf_counter() - start
            assert runs["status"].to_list() == ["ok"], runs
            run = _Run(spec, data, cfg, Path(tmp), task=None)
            model = run.model()
            module = ForecastModule(model, cfg, args.steps, data.context_length, data.horizons)
            tokens_per_step = module.batch_tokens(
                module.window({k: torch.as_tensor(v) for k, v in run.sampler.batch(0).items()})
            )
            tsfm_tps.append(tokens_per_step * args.steps / seconds)
            bare_seconds, bare_tokens = bare_loop(run, module, args.steps, args.device)
            bare_tps.append(bare_tokens / bare_seconds)
            module = ForecastModule(
                run.model(), cfg, args.steps, data.context_length, data.horizons
            )
            lightning_tps.append(
                tokens_per_step * args.steps / lightning_loop(run, module, args.steps, cfg)
            )
        cfg_model = spec.model_config
        n_params = cfg_model.non_embedding_params()
        seq = data.context_length // cfg.patch_size + data.train_horizon // cfg.patch_size
        peak = args.peak_tflops * 1e12 if args.peak_tflops else measured_peak_flops(args.device)
        best_tsfm, best_bare, best_light = max(tsfm_tps), max(bare_tps), max(lightning_tps)
        figures = {
            "device": args.device if not gpu else torch.cuda.get_device_name(),
            "threads": args.threads,
            "size": args.size,
            "arch": args.arch,
            "params_N": n_params,
            "batch": args.batch,
            "tokens_per_step": tokens_per_step,
            "steps": args.steps,
            "tsfm_tokens_per_s": round(best_tsfm),
            "bare_tokens_per_s": round(best_bare),
            "lightning_tokens_per_s": round(best_light),
            "overhead_pct_end_to_end": round(100 * (best_bare / best_tsfm - 1), 1),
            "overhead_pct_lightning_and_data": round(100 * (best_bare / best_light - 1), 1),
            "runs_tsfm_bare_lightning": [
                [round(x) for x in tsfm_tps],
                [round(x) for x in bare_tps],
                [round(x) for x in lightning_tps],
            ],
            "peak_tflops": round(peak / 1e12, 3),
            "peak_source": "given" if args.peak_tflops else "measured matmul",
            "mfu_tsfm_pct": round(100 * estimate_mfu(cfg_model, seq, best_tsfm, peak, n_params), 2),
            "mfu_bare_pct": round(100 * estimate_mfu(cfg_model, seq, best_bare, peak, n_params), 2),
        }
        print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
