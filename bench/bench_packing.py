"""The trainer on a solver-shaped batch, shared prompts packed against one row per sample.

    python bench/bench_packing.py               # SmolLM2-135M (the default model)
    python bench/bench_packing.py --tiny        # the tiny random Llama (labelled fallback)

The batch looks like the learning runs' solver batches: `--tasks` tasks with `--answers` answers
each (8 x 8), prompts of `--prompt` tokens (207, the mean of the opener-think deduction prompt
on run 8's held-out tasks) and answers of 3-10 tokens. Both paths are
`services.trainer.update.Updater.step` with the default loss, on copies of one model, timed
interleaved in the same run; the first round is the warm-up and also checks that both paths
give the same loss. Prints the median step times and their ratio.
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics

import torch
from bench_trainer import bench_model, settings_updater, timed  # the script folder is on sys.path

from azr.contracts.trainer import RewardBatch, RewardSample
from azr.core.tasks import Role, TaskType
from azr.settings import TrainerSettings
from services.trainer.policy import autocast_dtype, load_model, pick_device


def solver_batch(tasks: int, answers: int, prompt_len: int, vocab: int, seed: int) -> RewardBatch:
    rng = random.Random(seed)
    samples = []
    for _ in range(tasks):
        prompt = [rng.randrange(3, vocab) for _ in range(prompt_len)]
        for _ in range(answers):
            n_c = rng.randint(3, 10)
            samples.append(
                RewardSample(
                    task_type=TaskType.DEDUCTION,
                    role=Role.SOLVE,
                    prompt_token_ids=prompt,
                    completion_token_ids=[rng.randrange(3, vocab) for _ in range(n_c)],
                    sampling_logprobs=[-rng.uniform(0.1, 4) for _ in range(n_c)],
                    reward=float(rng.random() < 0.3),
                    temperature=0.7,
                )
            )
    return RewardBatch(run_id="bench", step=1, batch_id="b", weight_version=0, samples=samples)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiny", action="store_true", help="the tiny random Llama instead")
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--answers", type=int, default=8)
    ap.add_argument("--prompt", type=int, default=207)
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()

    dev = pick_device("auto")
    model_dir, label = bench_model(args.tiny)
    base = load_model(model_dir, dev)
    vocab = base.get_input_embeddings().weight.shape[0]
    batch = solver_batch(args.tasks, args.answers, args.prompt, vocab, seed=0)
    cfg = TrainerSettings()  # the trainer's defaults (micro-batch budget included)
    amp = autocast_dtype(cfg.autocast, dev)
    updaters = {
        pack: settings_updater(
            copy.deepcopy(base), cfg, dev, amp, solver_baseline="task", pack_prompts=pack
        )
        for pack in (False, True)
    }
    del base
    times: dict[bool, list[float]] = {False: [], True: []}
    forward_tokens: dict[bool, float] = {}
    for k in range(args.steps + 1):
        for pack, upd in updaters.items():
            metrics: dict[str, float] = {}
            seconds = timed(lambda u=upd, m=metrics: m.update(u.step(batch).metrics), dev)
            forward_tokens[pack] = metrics["forward_tokens"]
            if k == 0:
                print(
                    f"warm-up loss, {'packed' if pack else 'one row per sample'}: "
                    f"{metrics['loss']:.6f}"
                )
            else:
                times[pack].append(seconds)

    where = (
        torch.cuda.get_device_name()
        if dev.type == "cuda"
        else (f"CPU, {torch.get_num_threads()} threads")
    )
    print(f"model: {label}; device: {where}; precision: {'bf16 autocast' if amp else 'fp32'}")
    print(
        f"batch: {args.tasks} tasks x {args.answers} answers, prompt {args.prompt} tokens, "
        f"answers 3-10; {batch.n_tokens} tokens; median of {args.steps} interleaved steps each"
    )
    print()
    print("| path | tokens through the model | step time (s) |")
    print("|---|---:|---:|")
    plain, packed = statistics.median(times[False]), statistics.median(times[True])
    print(f"| one row per sample | {forward_tokens[False]:,.0f} | {plain:.2f} |")
    print(f"| shared prompts packed | {forward_tokens[True]:,.0f} | {packed:.2f} |")
    print(f"| **speed-up** | | **{plain / packed:.1f}x** |")


if __name__ == "__main__":
    main()
