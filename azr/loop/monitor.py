"""The loop's monitor signals: when to evaluate, and the greedy pass@1 on the run's held-out
set, through the loop's own inference and executor ports (so prompts, parser and sandbox are
exactly the loop's). The benchmark subset (CRUXEval, read from files) is the evaluation
service's: the gateway hands it in as the `BenchEval` port.

Every `loop.indist_eval_every` steps the orchestrator calls `evaluate_heldout` and stores the
result in the step's metrics under ``eval_indist``; every `loop.eval_every` steps it calls the
`BenchEval` port and stores it under ``eval``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

from azr.common.stats import bootstrap_ci
from azr.core.tasks import Answer, Task

from .ports import Sampling


class _AnswerGen(Protocol):
    answer: Answer


class SolverPort(Protocol):
    """What the gateway's `Inference` port offers (structurally)."""

    def solve(self, tasks: list[Task], n: int, sampling: Any) -> Sequence[Sequence[Any]]: ...

    def current_version(self) -> int: ...


class VerifierPort(Protocol):
    def verify(self, tasks: list[Task], answers: list[Answer]) -> list[bool]: ...


def should_evaluate(step: int, every: int) -> bool:
    return every > 0 and step > 0 and step % every == 0


class BenchEval(Protocol):
    """Scores the served version on a fixed benchmark subset (see services/evaluation/monitor)."""

    def __call__(
        self, inference: SolverPort, executor: VerifierPort, *, max_tokens: int
    ) -> dict[str, Any]: ...


def evaluate_heldout(
    inference: SolverPort,
    executor: VerifierPort,
    tasks: Sequence[Task],
    *,
    max_tokens: int = 512,
    seed: int = 0,
) -> dict[str, Any]:
    """Greedy pass@1 per task type on the run's held-out in-distribution tasks, with 95%
    bootstrap CIs (the same sampling, prompts and sandbox as the loop's solver)."""
    started = time.perf_counter()
    out: dict[str, Any] = {"version": inference.current_version()}
    greedy = Sampling(temperature=0.0, top_p=1.0, max_tokens=max_tokens, seed=seed)
    by_type: dict[str, list[Task]] = {}
    for t in tasks:
        by_type.setdefault(t.task_type.value, []).append(t)
    for name, group in sorted(by_type.items()):
        gens = inference.solve(group, 1, greedy)
        answers = [g[0].answer if g else None for g in gens]
        gradeable = [(t, a) for t, a in zip(group, answers, strict=True) if a and a.format_ok]
        verdicts = iter(
            executor.verify([t for t, _ in gradeable], [a for _, a in gradeable])
            if gradeable
            else []
        )
        correct = [bool(next(verdicts)) if a and a.format_ok else False for a in answers]
        ci = bootstrap_ci([float(c) for c in correct], resamples=1000, seed=seed)
        out[name] = {
            "score": ci.mean,
            "ci_low": ci.low,
            "ci_high": ci.high,
            "n": ci.n,
            "format_ok_rate": sum(bool(a and a.format_ok) for a in answers) / len(answers),
        }
    out["seconds"] = round(time.perf_counter() - started, 2)
    return out
