"""Inference throughput and hot-swap latency (`make bench-inference`).

Output tokens/s at 1, 8 and 32 concurrent sequences (sampling, T=1, fixed max tokens) for:
- the baseline, plain transformers ``model.generate`` on one batch (measured in this run);
- the transformers engine (one batched call, as the services send it);
- the vLLM engine (that many concurrent single-prompt requests; vLLM batches them).
Then the hot-swap latency of each engine (verify + load, median of a few swaps). Prints a
table of ratios against the baseline and, with --write-docs, replaces the "Inference" section
of docs/benchmarks.md. On a CUDA machine it also runs the transformers engine at batch
64/256/512 against the 34.9k tokens/s static-cache figure measured on an H100.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from azr.core.prompts import solve_prompt  # noqa: E402
from azr.core.tasks import IDENTITY_SEED, Role, TaskType  # noqa: E402
from services.inference.prompting import render  # noqa: E402

H100_STATIC_TOKS = 34_900.0
DOC = ROOT / "docs" / "benchmarks.md"
BASE = "transformers `generate` (baseline)"
START, END = "<!-- bench-inference:start -->", "<!-- bench-inference:end -->"


def prompts_for(tokenizer: Any, count: int) -> list[str]:
    base = render(
        tokenizer, solve_prompt(IDENTITY_SEED), task_type=TaskType.DEDUCTION, role=Role.SOLVE
    ).text
    # Distinct prompts so no engine can share a whole prompt between sequences.
    return [f"{base} ({i})" for i in range(count)]


class Baseline:
    """Plain transformers generate, fp32 CPU, one left-padded batch: the reference."""

    name = "baseline"

    def __init__(self, model_dir: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.tokenizer.padding_side = "left"
        auto: Any = AutoModelForCausalLM
        self.model = auto.from_pretrained(str(model_dir), dtype=torch.float32).eval()

    def run(self, prompts: list[str], n_new: int, seed: int) -> int:
        import torch

        batch = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        torch.manual_seed(seed)
        with torch.no_grad():
            seq = self.model.generate(
                **batch,
                do_sample=True,
                temperature=1.0,
                top_p=1.0,
                top_k=0,
                max_new_tokens=n_new,
                min_new_tokens=n_new,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        return int(seq.shape[1] - batch["input_ids"].shape[1]) * len(prompts)


async def timed(runner: Any, prompts: list[str], n_new: int, seed: int, batched: bool) -> float:
    """Output tokens/s of one run of `runner` on `prompts`."""
    t0 = time.perf_counter()
    if isinstance(runner, Baseline):
        tokens = await asyncio.to_thread(runner.run, prompts, n_new, seed)
    elif batched:  # the transformers engine: one batched call, as the services send it
        res = await runner.generate(prompts, max_tokens=n_new, seed=seed, ignore_eos=True)
        tokens = sum(len(s.completion_token_ids) for per in res for s in per)
    else:  # vLLM: concurrent single-prompt requests, batched by the server
        res = await asyncio.gather(
            *(
                runner.generate([p], max_tokens=n_new, seed=seed * 1000 + i, ignore_eos=True)
                for i, p in enumerate(prompts)
            )
        )
        tokens = sum(len(s.completion_token_ids) for r in res for per in r for s in per)
    return tokens / (time.perf_counter() - t0)


async def interleaved_rates(
    runners: dict[str, tuple[Any, bool]], concurrency: list[int], max_tokens: int, repeats: int
) -> dict[str, dict[int, float]]:
    """Per concurrency level, a short warm-up of each runner, then `repeats` rounds in which
    every runner runs once in turn: the shared machine's load drifts, so each ratio compares
    runs taken minutes apart at most."""
    rates: dict[str, dict[int, list[float]]] = {k: {c: [] for c in concurrency} for k in runners}
    for c in concurrency:
        for runner, batched in runners.values():
            await timed(runner, prompts_for(runner.tokenizer, c), 4, 0, batched)
        for r in range(repeats):
            for name, (runner, batched) in runners.items():
                rate = await timed(
                    runner, prompts_for(runner.tokenizer, c), max_tokens, r + 1, batched
                )
                rates[name][c].append(rate)
                print(f"  {name:<40} c={c:<3} {rate:8.1f} tok/s", flush=True)
    return {k: {c: statistics.median(v) for c, v in per.items()} for k, per in rates.items()}


async def swap_latency(
    engine: Any, dirs: list[tuple[int, Path]], swaps: int
) -> tuple[float, float]:
    """Median seconds of load_weights (verify + swap) and of the swap alone."""
    totals, inner = [], []
    for i in range(swaps):
        version, path = dirs[i % len(dirs)]
        t0 = time.perf_counter()
        info = await engine.load_weights(version, path)
        totals.append(time.perf_counter() - t0)
        inner.append(info.swap_seconds or 0.0)
    return statistics.median(totals), statistics.median(inner)


def perturbed(model_dir: Path, root: Path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from azr.common.checkpoints import save_model_checkpoint

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.add_(torch.randn(p.shape, generator=gen) * p.std() * 0.1)
    return save_model_checkpoint(model, AutoTokenizer.from_pretrained(str(model_dir)), root, 1)


def fmt(x: float | None, digits: int = 1) -> str:
    return "not measured" if x is None else f"{x:.{digits}f}"


def write_docs(section: str) -> None:
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    block = f"{START}\n{section.rstrip()}\n{END}"
    if START in text and END in text:
        text = re.sub(
            re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.DOTALL
        )
    else:
        text = text.rstrip() + "\n\n## Inference\n\n" + block + "\n"
    DOC.write_text(text)
    print(f"wrote the Inference section of {DOC.relative_to(ROOT)}")


async def main_async(args: argparse.Namespace) -> str:
    import torch

    from azr.common.model import prepare_default_model
    from azr.settings import get_settings
    from services.inference.transformers_engine import TransformersEngine

    # One compute thread (as the service sets on a 2-core machine): two were 2-6x slower here.
    torch.set_num_threads(args.threads)
    model_dir = Path(args.model) if args.model else prepare_default_model(get_settings().data_dir)
    conc = args.concurrency
    print(f"model {model_dir.name}, {args.max_tokens} new tokens, concurrency {conc}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-inference-"))
    v1 = perturbed(model_dir, tmp)
    dirs = [(1, v1), (0, model_dir)]
    runners: dict[str, tuple[Any, bool]] = {}
    engines: dict[str, Any] = {}
    if "vllm" in args.engines:  # started first: its start-up is the heaviest part
        from services.inference.vllm_engine import VLLMEngine

        vllm = VLLMEngine(
            model_dir, dtype=args.dtype, enforce_eager=args.eager, log_path=tmp / "vllm.log"
        )
        t0 = time.perf_counter()
        await vllm.start()
        print(f"  vLLM start-up {time.perf_counter() - t0:.0f} s", flush=True)
        label = f"vLLM engine ({vllm.dtype}, {'eager' if args.eager else 'compiled'})"
        engines["vLLM engine"] = vllm
    runners[BASE] = (Baseline(model_dir), True)
    if "transformers" in args.engines:
        tf = TransformersEngine(model_dir, device="cpu", max_batch=max(conc))
        await tf.start()
        engines["transformers engine"] = tf
        runners["transformers engine (fp32, batched)"] = (tf, True)
    if "vllm" in args.engines:
        runners[label] = (engines["vLLM engine"], False)
    swaps: dict[str, tuple[float, float]] = {}
    try:
        rows = await interleaved_rates(runners, conc, args.max_tokens, args.repeats)
        for name, eng in engines.items():
            swaps[name] = await swap_latency(eng, dirs, args.swaps)
    finally:
        for eng in engines.values():
            await eng.close()
        shutil.rmtree(tmp, ignore_errors=True)
    base = rows.pop(BASE)

    cpu = platform.processor() or platform.machine()
    lines = [
        f"Measured by `make bench-inference` on {os.cpu_count()} CPU cores ({cpu}), shared "
        f"with other jobs; {args.model or 'SmolLM2-135M-Instruct'}, {args.max_tokens} new tokens per sequence, "
        f"sampling at T=1; median of {args.repeats} interleaved rounds after a warm-up. Ratios are against plain "
        f"transformers `generate` (fp32, one batch, {args.threads} torch thread(s)) measured in the same run.",
        "",
        "| engine | " + " | ".join(f"{c} seq tok/s (ratio)" for c in conc) + " |",
        "|---|" + "---|" * len(conc),
        f"| {BASE} | " + " | ".join(f"{base[c]:.1f} (1.00x)" for c in conc) + " |",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | " + " | ".join(f"{r[c]:.1f} ({r[c] / base[c]:.2f}x)" for c in conc) + " |"
        )
    lines += [
        "",
        "| hot-swap (135M, in place) | verify + load, median s | swap alone "
        "(pause..resume), median s |",
        "|---|---|---|",
    ]
    for name, (total, inner) in swaps.items():
        lines.append(f"| {name} | {total:.2f} | {inner:.2f} |")

    lines += [
        "",
        "GPU rows (transformers engine on CUDA, bf16, static KV cache):",
        "",
        "| batch | tok/s | vs 34.9k H100 static-cache figure |",
        "|---|---|---|",
    ]
    if torch.cuda.is_available():
        eng3 = TransformersEngine(model_dir, device="cuda", max_batch=512)
        await eng3.start()
        for b in (64, 256, 512):
            r = (await interleaved_rates({"cuda": (eng3, True)}, [b], args.max_tokens, 1))["cuda"]
            lines.append(f"| {b} | {r[b]:.0f} | {r[b] / H100_STATIC_TOKS:.2f}x |")
        total, inner = await swap_latency(eng3, dirs, args.swaps)
        lines.append(
            f"\nCUDA swap: verify + load {total:.2f} s, load alone {inner:.2f} s "
            "(measured floor on an H100: 0.07-0.13 s)."
        )
        await eng3.close()
    else:
        for b in (64, 256, 512):
            lines.append(f"| {b} | not measured (no GPU in this run) | - |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="HF model dir (default: the bundled SmolLM2)")
    parser.add_argument(
        "--engines", nargs="+", default=["transformers", "vllm"], choices=["transformers", "vllm"]
    )
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--swaps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    parser.add_argument("--eager", action="store_true", help="vLLM without torch.compile")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16"],
        help="vLLM dtype; auto: bf16 only where the CPU has native bf16 (or on CUDA)",
    )
    parser.add_argument(
        "--write-docs",
        action="store_true",
        help="replace the Inference section of docs/benchmarks.md",
    )
    args = parser.parse_args()
    # SIGTERM -> SystemExit, so the engines' cleanup (stopping the vLLM server) still runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    section = asyncio.run(main_async(args))
    print()
    print(section)
    if args.write_docs:
        write_docs(section)


if __name__ == "__main__":
    main()
