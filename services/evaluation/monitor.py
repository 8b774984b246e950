"""In-loop benchmark monitor: score the version being served on a fixed CRUXEval subset, through
the loop's own inference and executor ports (so the prompts, parser and sandbox are exactly the
loop's).

The gateway hands `evaluate_subset` to the loop as its `BenchEval` port; the orchestrator calls it
every `loop.eval_every` steps and stores the result in the step's metrics under ``eval``; the
dashboard plots ``eval.<bench>.score`` over steps. The held-out evaluation is the loop's own
(`azr.loop.monitor.evaluate_heldout`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from azr.common.stats import bootstrap_ci
from azr.loop.monitor import SolverPort, VerifierPort, should_evaluate
from azr.loop.ports import Sampling

from .datasets import Bench, Problem, load_bench, select
from .prompting import as_task

__all__ = ["MONITOR_BENCHES", "evaluate_subset", "should_evaluate"]

MONITOR_BENCHES = (Bench.CRUXEVAL_O, Bench.CRUXEVAL_I)


@lru_cache(maxsize=8)
def _subset(bench: Bench, limit: int, path: str | None) -> tuple[Problem, ...]:
    # The first `limit` problems: the same subset at every step and in every run.
    return tuple(select(load_bench(bench, cruxeval=Path(path) if path else None), limit))


def evaluate_subset(
    inference: SolverPort,
    executor: VerifierPort,
    *,
    limit: int | None = None,
    max_tokens: int = 512,
    sampling: Any = None,
    cruxeval_path: Path | None = None,
    benches: Sequence[Bench] = MONITOR_BENCHES,
    seed: int = 0,
) -> dict[str, Any]:
    """Greedy pass@1 on the first `limit` (default `eval.monitor_limit`) CRUXEval-O and -I
    problems, with 95% bootstrap CIs."""
    if limit is None:
        from azr.settings import get_settings

        limit = get_settings().eval.monitor_limit
    if sampling is None:
        sampling = Sampling(temperature=0.0, top_p=1.0, max_tokens=max_tokens, seed=seed)
    started = time.perf_counter()
    out: dict[str, Any] = {"version": inference.current_version(), "limit": limit}
    for bench in benches:
        problems = _subset(bench, limit, str(cruxeval_path) if cruxeval_path else None)
        tasks = [as_task(p) for p in problems]
        gens = inference.solve(tasks, 1, sampling)
        answers = [g[0].answer for g in gens]
        correct = executor.verify(tasks, answers)
        ci = bootstrap_ci([float(c) for c in correct], resamples=1000, seed=seed)
        out[bench.value] = {
            "score": ci.mean,
            "ci_low": ci.low,
            "ci_high": ci.high,
            "n": ci.n,
            "format_ok_rate": sum(a.format_ok for a in answers) / max(1, len(answers)),
        }
    out["seconds"] = round(time.perf_counter() - started, 2)
    return out
