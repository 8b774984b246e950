"""Trainer throughput against a bare torch loop, same model, same batch, same run.

    python bench/bench_trainer.py            # SmolLM2-135M (the default model)
    python bench/bench_trainer.py --tiny     # the tiny random Llama (labelled fallback)

The trainer path is `services.trainer.update.Updater.step` with the default loss (PPO-clip
surrogate, truncated importance weights, entropy bonus) on a reward batch; the bare loop is a
forward over the whole sequences, a REINFORCE loss on the response tokens, backward, grad-norm
clip and the same AdamW. Both see the same token sequences. Prints tokens/s and the ratio
(target >= 0.8). CUDA with bf16 autocast when present, CPU fp32 otherwise.
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from azr.contracts.trainer import RewardBatch, RewardSample
from azr.core.tasks import GROUPS
from azr.settings import TrainerSettings
from services.trainer.loss import LossConfig
from services.trainer.policy import autocast_dtype, load_model, make_optimizer, pick_device
from services.trainer.update import Updater


def make_batch(n: int, prompt_len: int, completion_len: int, vocab: int, seed: int) -> RewardBatch:
    rng = random.Random(seed)
    samples = []
    for i in range(n):
        t, r = GROUPS[i % len(GROUPS)]
        samples.append(
            RewardSample(
                task_type=t,
                role=r,
                prompt_token_ids=[rng.randrange(3, vocab) for _ in range(prompt_len)],
                completion_token_ids=[rng.randrange(3, vocab) for _ in range(completion_len)],
                sampling_logprobs=[-rng.uniform(8, 12) for _ in range(completion_len)],
                reward=rng.choice([-1.0, -0.5, 0.0, 1.0]),
            )
        )
    return RewardBatch(run_id="bench", step=0, batch_id="b", weight_version=0, samples=samples)


def bare_step(
    model: Any, opt: torch.optim.Optimizer, batch: RewardBatch, dev: torch.device, amp: Any
) -> None:
    ids = torch.tensor([s.prompt_token_ids + s.completion_token_ids for s in batch.samples])
    n_p = len(batch.samples[0].prompt_token_ids)
    adv = torch.tensor([s.reward for s in batch.samples]).to(dev)
    ids = ids.to(dev)
    ctx = (
        torch.autocast(dev.type, dtype=amp)
        if amp is not None
        else torch.autocast(dev.type, enabled=False)
    )
    with ctx:
        logits = model(input_ids=ids).logits[:, n_p - 1 : -1].float()
    logp = torch.log_softmax(logits, -1).gather(-1, ids[:, n_p:].unsqueeze(-1)).squeeze(-1)
    loss = -(adv[:, None] * logp).mean()
    loss.backward()  # type: ignore[no-untyped-call]
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)


def bench_model(tiny: bool) -> tuple[Path, str]:
    """The model folder a trainer benchmark runs on, and its label: the default model, or the
    tiny random Llama as a labelled fallback."""
    if tiny:
        from azr.common.model import build_tiny_model

        path = build_tiny_model(Path(tempfile.mkdtemp(prefix="azr-bench-")) / "tiny")
        return path, "tiny random Llama (fallback)"
    from azr.common.model import prepare_default_model

    return prepare_default_model(), "SmolLM2-135M-Instruct"


def settings_updater(
    model: Any, cfg: TrainerSettings, dev: torch.device, amp: Any, **options: Any
) -> Updater:
    """`Updater` with the trainer's loss, budget, clip and AdamW from `cfg`; `options` are
    Updater's keyword settings (solver_baseline, pack_prompts, ...)."""
    loss_cfg = LossConfig(cfg.clip_ratio, cfg.entropy_coef, cfg.kl_coef, cfg.tis_cap)
    optimizer = make_optimizer(model, cfg, dev)
    return Updater(
        model, optimizer, loss_cfg, cfg.micro_batch_tokens, cfg.grad_clip, dev, amp, **options
    )


def timed(fn: Any, dev: torch.device) -> float:
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiny", action="store_true", help="the tiny random Llama instead")
    ap.add_argument("--seqs", type=int, default=None)
    ap.add_argument("--prompt", type=int, default=None)
    ap.add_argument("--completion", type=int, default=None)
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()

    dev = pick_device("auto")
    cuda = dev.type == "cuda"
    seqs = args.seqs or (64 if cuda else 4)
    prompt = args.prompt or (256 if cuda else 128)
    completion = args.completion or (256 if cuda else 128)

    model_dir, label = bench_model(args.tiny)
    base = load_model(model_dir, dev)
    vocab = base.get_input_embeddings().weight.shape[0]
    batch = make_batch(seqs, prompt, completion, vocab, seed=0)
    tokens = batch.n_tokens
    cfg = TrainerSettings(micro_batch_tokens=seqs * (prompt + completion))
    amp = autocast_dtype(cfg.autocast, dev)

    bare_model = copy.deepcopy(base)
    bare_opt = make_optimizer(bare_model, cfg, dev)
    model = copy.deepcopy(base)
    del base
    updater = settings_updater(model, cfg, dev, amp)
    # Interleaved (bare, trainer, bare, trainer, ...): on a shared machine the load changes
    # over a run, and alternating exposes both paths to the same conditions.
    bare: list[float] = []
    trainer: list[float] = []
    for k in range(args.steps + 1):
        b_s = timed(lambda: bare_step(bare_model, bare_opt, batch, dev, amp), dev)
        t_s = timed(lambda: updater.step(batch), dev)
        if k:  # the first round is the warm-up
            bare.append(b_s)
            trainer.append(t_s)

    b, t = statistics.median(bare), statistics.median(trainer)
    where = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"model: {label}; device: {where}; precision: {'bf16 autocast' if amp else 'fp32'}")
    print(
        f"batch: {seqs} x ({prompt} prompt + {completion} completion) = {tokens} tokens; "
        f"median of {args.steps} interleaved steps each, after one warm-up round"
    )
    print()
    print("| path | step time (s) | tokens/s |")
    print("|---|---|---|")
    print(f"| bare torch forward/backward/AdamW | {b:.2f} | {tokens / b:,.0f} |")
    print(f"| trainer `Updater.step` | {t:.2f} | {tokens / t:,.0f} |")
    print(f"| **ratio trainer / bare** | | **{b / t:.2f}x** (target >= 0.8x) |")


if __name__ == "__main__":
    main()
