"""`azr eval`: one model, one or more benchmarks, one engine session, one executor."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .datasets import INDIST_BENCHES, Bench, drop_empty_indist, latest_heldout
from .engines import EngineSession, make_engine, resolve_model
from .executor_proc import executor_url
from .grader import ExecutorGrader
from .harness import EvalConfig, evaluate_bench, save_run
from .results import format_table

if TYPE_CHECKING:
    from azr.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalRequest:
    model: str = "base"
    benches: tuple[Bench, ...] = (Bench.CRUXEVAL_O,)
    limit: int | None = None
    samples: int = 1
    engine: str | None = None  # default: settings.inference.engine
    out_dir: Path | None = None  # default: <data_dir>/eval
    executor_url: str | None = None  # default: settings.executor.url only if set in the env
    max_tokens: int | None = None
    batch_size: int = 16
    heldout: Path | None = None  # indist benches; default: the newest run's exported set


def run_eval(
    req: EvalRequest,
    settings: Settings,
    *,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Evaluate `req.model` on each benchmark; write `<label>.<bench>.jsonl` and
    `<label>.<bench>.summary.json` under the output folder; return the summaries."""
    if req.samples < 1:
        raise ValueError("--samples must be at least 1")
    model = resolve_model(req.model, settings)
    engine_name = req.engine or settings.inference.engine
    out_dir = req.out_dir or settings.data_dir / "eval"
    ev = settings.eval
    config = EvalConfig(
        samples=req.samples,
        temperature=ev.temperature,
        top_p=ev.top_p,
        max_tokens=req.max_tokens or ev.max_tokens,
        seed=ev.seed,
        batch_size=req.batch_size,
        resamples=ev.bootstrap_resamples,
        close_answers=settings.inference.close_answers,
    )
    heldout = None
    benches = list(req.benches)
    if any(b in INDIST_BENCHES for b in benches):
        heldout = req.heldout or latest_heldout(settings.data_dir)
        benches, skipped = drop_empty_indist(benches, heldout)
        for bench in skipped:
            log.warning("%s: the held-out set %s has no tasks of its type; skipped", bench, heldout)
    summaries: list[dict[str, Any]] = []
    engine = make_engine(engine_name, model.path, settings)
    # The engine is entered first so that on exit (or Ctrl-C / SIGTERM) the executor's worker and
    # Redis are stopped first: closing an engine may wait for a generation still in flight.
    with (
        EngineSession.from_settings(engine, settings) as session,
        executor_url(
            req.executor_url,
            redis_url=settings.redis_url,
            data_dir=settings.data_dir,
            settings=settings,
            log_path=_log_path(out_dir),
        ) as url,
        ExecutorGrader(url, token=settings.service_token) as grader,
    ):
        for bench in benches:

            def tick(done: int, total: int, _b: Bench = bench) -> None:
                if progress:
                    progress(_b.value, done, total)

            results, summary = evaluate_bench(
                bench,
                session.generate,
                grader,
                config,
                limit=req.limit,
                cruxeval_path=ev.cruxeval_path,
                indist_path=heldout,
                renderer=session.render,
                progress=tick,
                meta={
                    "model": str(req.model),
                    "model_label": model.label,
                    "model_path": model.path.name,
                    "model_version": model.version,
                    **session.info(),
                    "close_answers": config.close_answers,
                    **({"heldout_file": str(heldout)} if bench in INDIST_BENCHES else {}),
                },
            )
            jsonl, summary_path = save_run(out_dir, results, summary)
            summary["files"] = {"results": jsonl.name, "summary": summary_path.name}
            summary_path.write_text(json.dumps(summary, indent=2) + "\n")
            summaries.append(summary)
    return summaries


def _log_path(out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir / "executor.log"


def print_table(summaries: Sequence[dict[str, Any]]) -> str:
    return format_table(list(summaries))


def compare_to(baseline: str, summaries: Sequence[dict[str, Any]], out_dir: Path) -> str:
    """Markdown rows: each evaluated bench against the same bench's results of `baseline`
    (a model label such as ``base`` or ``v000010``, evaluated earlier into the same folder),
    paired by problem, with a paired bootstrap 95% CI of the difference."""
    from .report import compare, markdown_row

    lines = [
        f"| benchmark | n | {baseline} | {summaries[0].get('model_label', 'model')} "
        "| difference (paired 95% CI) | reading |",
        "|---|---|---|---|---|---|",
    ]
    for s in summaries:
        before = out_dir / f"{baseline}.{s['bench']}.jsonl"
        after = out_dir / s["files"]["results"]
        if not before.is_file():
            lines.append(f"| {s['bench']} | - | no {before.name} | | | |")
            continue
        resamples = int(s.get("bootstrap", {}).get("resamples", 2000))
        lines.append(markdown_row(s["bench"], compare(before, after, resamples=resamples)))
    return "\n".join(lines)
