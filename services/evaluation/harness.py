"""The evaluation loop: prompts -> engine -> parse -> grade in the sandbox -> scores.

`evaluate_problems` is transport-agnostic (any `Generate` callable and any grader); `run_eval`
is what `azr eval` calls: it resolves the model, starts an engine and, when no executor URL is
given, an executor, then writes the per-problem JSONL and the summary.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from services.inference.prompting import RenderedPrompt

from .datasets import Bench, Problem, load_bench, select
from .grader import Verdict
from .grading import grade_request
from .prompting import build_prompt, parse
from .results import ProblemResult, format_table, summarise, write_results

log = logging.getLogger(__name__)

# prompts, n, temperature, top_p, max_tokens, seed -> n completion texts per prompt
Generate = Callable[[list[str], int, float, float, int, int | None], list[list[str]]]


class Renderer(Protocol):
    """How a problem becomes engine text: the inference service's renderer with its tokenizer."""

    def __call__(self, problem: Problem) -> RenderedPrompt: ...


class Grader(Protocol):
    def grade(self, requests: Sequence[Any]) -> list[Verdict]: ...


@dataclass(frozen=True)
class EvalConfig:
    samples: int = 1
    temperature: float = 0.8  # used only when samples > 1; one sample is greedy
    top_p: float = 0.95
    max_tokens: int = 512
    seed: int = 0
    batch_size: int = 16
    resamples: int = 2000
    close_answers: bool = True  # as the solver service: a complete answer is closed for the model

    @property
    def greedy(self) -> bool:
        return self.samples == 1


def evaluate_problems(
    problems: Sequence[Problem],
    generate: Generate,
    grader: Grader,
    config: EvalConfig,
    *,
    renderer: Renderer = build_prompt,
    progress: Callable[[int, int], None] | None = None,
) -> list[ProblemResult]:
    """Generate `samples` answers per problem (greedy when 1), parse them with the core parser
    and grade each in the executor. Results come back in problem order."""
    results: list[ProblemResult] = []
    temperature = 0.0 if config.greedy else config.temperature
    top_p = 1.0 if config.greedy else config.top_p
    for start in range(0, len(problems), config.batch_size):
        chunk = list(problems[start : start + config.batch_size])
        rendered = [renderer(p) for p in chunk]
        seed = None if config.greedy else config.seed + start
        outputs = generate(
            [r.text for r in rendered], config.samples, temperature, top_p, config.max_tokens, seed
        )
        if len(outputs) != len(chunk):
            raise RuntimeError(f"engine returned {len(outputs)} results for {len(chunk)} prompts")
        answers = [
            [
                parse(p, text, prefill=r.prefill, close_answers=config.close_answers, rendered=r)
                for text in texts
            ]
            for p, r, texts in zip(chunk, rendered, outputs, strict=True)
        ]
        requests = [
            grade_request(p, a.value) for p, ans in zip(chunk, answers, strict=True) for a in ans
        ]
        verdicts = iter(grader.grade(requests))
        for p, texts, ans in zip(chunk, outputs, answers, strict=True):
            vs = [next(verdicts) for _ in ans]
            results.append(
                ProblemResult(
                    id=p.id,
                    bench=p.bench.value,
                    completions=list(texts),
                    answers=[a.value for a in ans],
                    format_ok=[a.format_ok for a in ans],
                    correct=[v.correct for v in vs],
                    statuses=[v.status for v in vs],
                    reasons=[v.reason or a.error for v, a in zip(vs, ans, strict=True)],
                )
            )
        if progress:
            progress(len(results), len(problems))
    return results


def evaluate_bench(
    bench: Bench | str,
    generate: Generate,
    grader: Grader,
    config: EvalConfig,
    *,
    limit: int | None = None,
    cruxeval_path: Path | None = None,
    indist_path: Path | None = None,
    meta: dict[str, Any] | None = None,
    renderer: Renderer = build_prompt,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[ProblemResult], dict[str, Any]]:
    """Load a benchmark (first `limit` problems), evaluate, and summarise with bootstrap CIs."""
    bench = Bench(bench)
    problems = select(load_bench(bench, cruxeval=cruxeval_path, indist=indist_path), limit)
    started = time.perf_counter()
    results = evaluate_problems(
        problems, generate, grader, config, renderer=renderer, progress=progress
    )
    summary = summarise(
        results,
        meta={
            "bench": bench.value,
            "limit": limit,
            "greedy": config.greedy,
            "temperature": 0.0 if config.greedy else config.temperature,
            "top_p": 1.0 if config.greedy else config.top_p,
            "max_tokens": config.max_tokens,
            "seconds": round(time.perf_counter() - started, 2),
            **(meta or {}),
        },
        samples=config.samples,
        resamples=config.resamples,
        seed=config.seed,
    )
    return results, summary


def save_run(
    out_dir: Path, results: list[ProblemResult], summary: dict[str, Any]
) -> tuple[Path, Path]:
    stem = f"{summary.get('model_label', 'model')}.{summary['bench']}"
    return write_results(out_dir, stem, results, summary)


__all__ = [
    "EvalConfig",
    "Generate",
    "Grader",
    "evaluate_bench",
    "evaluate_problems",
    "format_table",
    "save_run",
]
