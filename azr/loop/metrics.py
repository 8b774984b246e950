"""Per-step metrics for each task x role group, the reward-hacking signals, and their Prometheus
export. Everything here is computed from a `StepOutcome`, so it is the same after a replay."""

from __future__ import annotations

from statistics import fmean
from typing import Any

from prometheus_client import Gauge

from azr.core.rewards import copies_prompt, echoes_input
from azr.core.tasks import Role, TaskType, group_key

from . import signals
from .records import StepOutcome

_GROUP_GAUGE = Gauge(
    "azr_loop_group_metric",
    "Latest per-step metric of a task x role group",
    ["run", "group", "metric"],
)
_STEP_GAUGE = Gauge("azr_loop_step_metric", "Latest per-step loop metric", ["run", "metric"])


def _mean(values: list[float]) -> float:
    return fmean(values) if values else 0.0


def _rate(count: int, total: int) -> float:
    return count / total if total else 0.0


def _is_determinism_rejection(reason: str | None, status: str) -> bool:
    text = f"{status} {reason or ''}".lower()
    return "determinis" in text


def group_metrics(outcome: StepOutcome) -> dict[str, dict[str, float]]:
    """`{"deduction/propose": {...}, ...}` for the six groups (empty groups report zeros)."""
    out: dict[str, dict[str, float]] = {}
    for task_type in TaskType:
        props = outcome.proposals.get(task_type, [])
        valid = [p for p in props if p.valid]
        rates = [p.solve_rate for p in valid if p.solve_rate is not None]
        rejected = [p for p in props if p.validation is not None and not p.validation.valid]
        out[group_key(task_type, Role.PROPOSE)] = {
            "n": len(props),
            "valid_rate": _rate(len(valid), len(props)),
            "solve_rate": _mean(rates),
            "learnability": _mean([p.learnability for p in valid]),
            "reward_mean": _mean([p.reward for p in props]),
            "format_error_rate": _rate(
                sum(1 for p in props if not p.gen.proposal.format_ok), len(props)
            ),
            "parse_error_rate": _rate(
                sum(1 for p in props if p.gen.proposal.error is not None), len(props)
            ),
            "answer_closed_rate": _rate(sum(1 for p in props if p.gen.answer_closed), len(props)),
            "tokens": sum(
                len(p.gen.completion_token_ids)
                + (len(p.gen.continuation.completion_token_ids) if p.gen.continuation else 0)
                for p in props
            ),
            "rollout_tokens": sum(p.rollout_tokens for p in props),
            "staleness": float(outcome.staleness),
            # reward-hacking signals
            "trivial_share": _rate(sum(1 for p in valid if p.trivial), len(valid)),
            "duplicate_rate": _rate(sum(1 for p in valid if p.duplicate), len(valid)),
            "program_chars": _mean([float(len(p.task.program)) for p in valid if p.task]),
            "determinism_rejections": _rate(
                sum(
                    1
                    for p in rejected
                    if p.validation
                    and _is_determinism_rejection(p.validation.reason, p.validation.status)
                ),
                len(props),
            ),
            "solved_share": _rate(
                sum(1 for p in valid if p.solve_rate is not None and p.solve_rate >= 1.0),
                len(valid),
            ),
        }
        answers = outcome.answers.get(task_type, [])
        out[group_key(task_type, Role.SOLVE)] = {
            "n": len(answers),
            "solve_rate": _rate(sum(1 for a in answers if a.correct), len(answers)),
            "reward_mean": _mean([a.reward for a in answers]),
            "format_error_rate": _rate(
                sum(1 for a in answers if not a.gen.answer.format_ok), len(answers)
            ),
            "answer_closed_rate": _rate(
                sum(1 for a in answers if a.gen.answer_closed), len(answers)
            ),
            "tokens": sum(len(a.gen.completion_token_ids) for a in answers),
            "staleness": float(outcome.staleness),
            # the input-echo shortcut: answers that copy the prompt, tasks on which that is right
            "echo_answer_share": _rate(
                sum(1 for a in answers if copies_prompt(a.task, a.gen.answer.value)), len(answers)
            ),
            "echo_task_share": _rate(sum(1 for a in answers if echoes_input(a.task)), len(answers)),
        }
    return out


def raw_samples(outcome: StepOutcome, per_group: int) -> list[dict[str, Any]]:
    """The first `per_group` responses of each group as the model wrote them, with how they
    scored: the only place a run keeps raw text, for reading what the policy actually does."""

    def row(
        group: str, gen: Any, format_ok: bool, error: str | None, reward: float
    ) -> dict[str, Any]:
        second = getattr(gen, "continuation", None)
        return {
            "group": group,
            "text": gen.text,
            # a two-stage proposal's second stage (the input it wrote after the followup)
            **({"continuation": second.text} if second is not None else {}),
            "answer_closed": gen.answer_closed,
            "format_ok": format_ok,
            "error": error,
            "reward": reward,
        }

    rows = [
        row(
            group_key(task_type, Role.PROPOSE),
            sp.gen,
            sp.gen.proposal.format_ok,
            sp.gen.proposal.error
            or (sp.validation.reason if sp.validation and not sp.valid else None),
            sp.reward,
        )
        for task_type, props in outcome.proposals.items()
        for sp in props[:per_group]
    ]
    rows += [
        row(
            group_key(task_type, Role.SOLVE),
            sa.gen,
            sa.gen.answer.format_ok,
            sa.gen.answer.error,
            sa.reward,
        )
        for task_type, answers in outcome.answers.items()
        for sa in answers[:per_group]
    ]
    return rows


def hacking_signals(outcome: StepOutcome) -> dict[str, Any]:
    """The evaluation package's reward-hacking signals over this step's proposals, and the
    names of those past their thresholds."""
    records = [
        signals.ProposalRecord(
            task_type=tt.value,
            program=(sp.task.program if sp.task else sp.gen.proposal.program or ""),
            inputs=tuple(sp.task.inputs if sp.task else sp.gen.proposal.inputs),
            outputs=tuple(sp.task.outputs if sp.task else ()),
            valid=sp.valid,
            status=(
                f"{sp.validation.status} {sp.validation.reason or ''}"
                if sp.validation
                else (sp.gen.proposal.error or "unparsed")
            ),
            solve_rate=sp.solve_rate,
        )
        for tt, props in outcome.proposals.items()
        for sp in props
    ]
    found = signals.compute_signals(records)
    return {"signals": found.as_dict(), "flags": signals.flags(found)}


def step_metrics(outcome: StepOutcome) -> dict[str, Any]:
    groups = group_metrics(outcome)
    tokens = sum(g["tokens"] + g.get("rollout_tokens", 0.0) for g in groups.values())
    elapsed = sum(outcome.timings.values())
    return {
        "step": outcome.step,
        "weight_version": outcome.weight_version,
        "staleness": outcome.staleness,
        "groups": groups,
        "timings": dict(outcome.timings),
        "tokens_generated": tokens,
        "tokens_per_s": tokens / elapsed if elapsed > 0 else 0.0,
        **hacking_signals(outcome),
    }


def export(run_id: int, metrics: dict[str, Any]) -> None:
    """Publish a step's metrics as Prometheus gauges (the latest step of each run)."""
    run = str(run_id)
    for group, values in metrics.get("groups", {}).items():
        for name, value in values.items():
            _GROUP_GAUGE.labels(run, group, name).set(float(value))
    for phase, seconds in metrics.get("timings", {}).items():
        _STEP_GAUGE.labels(run, f"seconds_{phase}").set(float(seconds))
    for name in ("step", "weight_version", "staleness", "tokens_generated", "tokens_per_s"):
        if name in metrics:
            _STEP_GAUGE.labels(run, name).set(float(metrics[name]))
