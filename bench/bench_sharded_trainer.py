"""The sharded trainer (FSDP2, world size 1) against the single-process trainer: same model, same
batch, same run, interleaved steps.

    python bench/bench_sharded_trainer.py            # SmolLM2-135M (the default model)
    python bench/bench_sharded_trainer.py --tiny     # the tiny random Llama

Both paths are `Updater.step`: one on the plain model (bf16 autocast on CUDA), one on the FSDP2
root of `services.trainer.sharded` in a process group of one (NCCL on CUDA, gloo on CPU; bf16
mixed-precision policy on CUDA). At world size 1 FSDP's gathers are copies, so the ratio is its
bookkeeping overhead; the step time on N GPUs needs N GPUs (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch
from bench_trainer import make_batch, timed  # run as a script: bench/ is on sys.path

from azr.settings import TrainerSettings
from services.trainer.distributed import init_distributed, rank_device, shutdown
from services.trainer.loss import LossConfig
from services.trainer.policy import autocast_dtype, load_model, make_optimizer, pick_device
from services.trainer.sharded import load_sharded
from services.trainer.update import Updater


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiny", action="store_true", help="the tiny random Llama instead")
    ap.add_argument("--seqs", type=int, default=None)
    ap.add_argument("--tokens", type=int, default=None, help="prompt and completion length each")
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()

    dev = pick_device("auto")
    cuda = dev.type == "cuda"
    seqs = args.seqs or (64 if cuda else 4)
    half = args.tokens or (256 if cuda else 128)
    if args.tiny:
        from azr.common.model import build_tiny_model

        model_dir = build_tiny_model(Path(tempfile.mkdtemp(prefix="azr-bench-")) / "tiny")
        label = "tiny random Llama"
    else:
        from azr.common.model import prepare_default_model

        model_dir = prepare_default_model()
        label = "SmolLM2-135M-Instruct"
    cfg = TrainerSettings(micro_batch_tokens=seqs * 2 * half, fsdp="on")
    amp = autocast_dtype(cfg.autocast, dev)
    loss_cfg = LossConfig(cfg.clip_ratio, cfg.entropy_coef, cfg.kl_coef, cfg.tis_cap)

    plain = load_model(model_dir, dev)
    vocab = plain.get_input_embeddings().weight.shape[0]
    batch = make_batch(seqs, half, half, vocab, seed=0)
    single = Updater(
        plain, make_optimizer(plain, cfg, dev), loss_cfg, cfg.micro_batch_tokens, 1.0, dev, amp
    )

    ctx = init_distributed(cfg, dev)
    sdev = rank_device(dev, ctx)
    root = load_sharded(model_dir, sdev, ctx, bf16=amp is not None, checkpointing=False)
    sharded = Updater(
        root,
        make_optimizer(root, cfg, sdev),
        loss_cfg,
        cfg.micro_batch_tokens,
        1.0,
        sdev,
        None,
        dist=ctx,
        forward=root,
    )
    one: list[float] = []
    fsdp: list[float] = []
    for k in range(args.steps + 1):
        a = timed(lambda: single.step(batch), dev)
        b = timed(lambda: sharded.step(batch), sdev)
        if k:  # the first round is the warm-up
            one.append(a)
            fsdp.append(b)
    shutdown(ctx)

    a, b = statistics.median(one), statistics.median(fsdp)
    where = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"
    tokens = batch.n_tokens
    print(f"model: {label}; device: {where}; precision: {'bf16' if amp else 'fp32'}")
    print(f"batch: {seqs} x {2 * half} = {tokens} tokens; median of {args.steps} steps each")
    print()
    print("| path | step time (s) | tokens/s |")
    print("|---|---|---|")
    print(f"| single-process `Updater.step` | {a:.2f} | {tokens / a:,.0f} |")
    print(f"| FSDP2, world size 1 | {b:.2f} | {tokens / b:,.0f} |")
    print(f"| **ratio FSDP2 / single** | | **{a / b:.2f}x** |")


if __name__ == "__main__":
    main()
