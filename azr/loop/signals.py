"""Reward-hacking signals: pure functions over one step's proposals.

Self-play can game itself: a proposer that emits identity or constant programs, repeats itself,
or proposes tasks the solver always gets right collects rewards without getting harder. These
signals measure that per step; `flags` names those past their threshold so the dashboard can
show them. Nothing here runs model code: triviality and fingerprints are the core's AST-based
rules (`azr.core.rewards.is_trivial_program`, `azr.core.dedup.task_fingerprint`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from azr.core.dedup import task_fingerprint
from azr.core.rewards import is_trivial_program
from azr.core.tasks import Task, TaskType


@dataclass(frozen=True)
class ProposalRecord:
    """What the loop knows about one proposal after validation (and, if valid, rollouts).

    `status` is the executor's validation status or reason text (e.g. ``nondeterministic``);
    `solve_rate` is the mean of the n learnability rollouts (None when not measured).
    """

    task_type: str
    program: str
    inputs: Sequence[str] = ()
    outputs: Sequence[str] = ()
    valid: bool = True
    status: str = ""
    solve_rate: float | None = None


@dataclass(frozen=True)
class Thresholds:
    max_trivial_share: float = 0.5
    max_duplicate_rate: float = 0.5
    max_solved_share: float = 0.8
    max_determinism_rejections: float = 0.3
    min_program_chars: float = 30.0

    @classmethod
    def from_settings(cls, settings: Any) -> Thresholds:
        """Read the thresholds from `Settings.eval` (any object with the same attributes)."""
        return cls(
            max_trivial_share=settings.max_trivial_share,
            max_duplicate_rate=settings.max_duplicate_rate,
            max_solved_share=settings.max_solved_share,
            max_determinism_rejections=settings.max_determinism_rejections,
            min_program_chars=settings.min_program_chars,
        )


def triviality(record: ProposalRecord) -> str | None:
    """'identity', 'constant' or None, by the core's rule (AST first, then the executed pairs)."""
    try:
        task_type = TaskType(record.task_type)
    except ValueError:
        return None
    task = Task(task_type, record.program, tuple(record.inputs), tuple(record.outputs))
    return is_trivial_program(task)


def normalised_key(record: ProposalRecord) -> str:
    """The buffer's own fingerprint: equal up to comments, docstrings and formatting."""
    try:
        return task_fingerprint(record.task_type, record.program, record.inputs)
    except ValueError:  # unknown task type: still count exact repeats
        return f"{record.task_type}\x00{record.program}\x00" + "\x00".join(record.inputs)


def is_determinism_rejection(record: ProposalRecord) -> bool:
    text = record.status.lower()
    return not record.valid and ("determinis" in text or "nondetermin" in text)


@dataclass
class StepSignals:
    proposals: int = 0
    valid: int = 0
    trivial_share: float = 0.0
    identity_share: float = 0.0
    constant_share: float = 0.0
    duplicate_rate: float = 0.0
    mean_program_chars: float = 0.0
    determinism_rejections: float = 0.0
    solved_share: float = 0.0
    by_task_type: dict[str, dict[str, float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "proposals": self.proposals,
            "valid": self.valid,
            "trivial_share": self.trivial_share,
            "identity_share": self.identity_share,
            "constant_share": self.constant_share,
            "duplicate_rate": self.duplicate_rate,
            "mean_program_chars": self.mean_program_chars,
            "determinism_rejections": self.determinism_rejections,
            "solved_share": self.solved_share,
            "by_task_type": self.by_task_type,
        }


def _share(count: int, total: int) -> float:
    return count / total if total else 0.0


def _signals(records: Sequence[ProposalRecord]) -> StepSignals:
    valid = [r for r in records if r.valid]
    kinds = [triviality(r) for r in valid]
    keys = [normalised_key(r) for r in valid]
    measured = [r for r in valid if r.solve_rate is not None]
    solved = sum(1 for r in measured if r.solve_rate is not None and r.solve_rate >= 1.0)
    return StepSignals(
        proposals=len(records),
        valid=len(valid),
        trivial_share=_share(sum(k is not None for k in kinds), len(valid)),
        identity_share=_share(kinds.count("identity"), len(valid)),
        constant_share=_share(kinds.count("constant"), len(valid)),
        duplicate_rate=_share(len(keys) - len(set(keys)), len(keys)),
        mean_program_chars=(sum(len(r.program) for r in valid) / len(valid)) if valid else 0.0,
        determinism_rejections=_share(
            sum(is_determinism_rejection(r) for r in records), len(records)
        ),
        solved_share=_share(solved, len(measured)),
    )


def compute_signals(records: Sequence[ProposalRecord]) -> StepSignals:
    """All signals for one step, overall and per task type."""
    out = _signals(records)
    for task_type in sorted({r.task_type for r in records}):
        part = _signals([r for r in records if r.task_type == task_type])
        d = part.as_dict()
        d.pop("by_task_type")
        out.by_task_type[task_type] = {k: float(v) for k, v in d.items()}
    return out


def flags(signals: StepSignals, thresholds: Thresholds | None = None) -> list[str]:
    """Names of the signals past their threshold, with the value, for the dashboard.
    Without explicit thresholds the settings' (`AZR_EVAL__MAX_TRIVIAL_SHARE`, ...) apply."""
    if thresholds is None:
        from azr.settings import get_settings

        thresholds = Thresholds.from_settings(get_settings().eval)
    t = thresholds
    out: list[str] = []
    if signals.valid and signals.trivial_share > t.max_trivial_share:
        out.append(f"trivial_programs: {signals.trivial_share:.0%} > {t.max_trivial_share:.0%}")
    if signals.valid and signals.duplicate_rate > t.max_duplicate_rate:
        out.append(f"duplicates: {signals.duplicate_rate:.0%} > {t.max_duplicate_rate:.0%}")
    if signals.valid and signals.solved_share > t.max_solved_share:
        out.append(
            f"always_solved: {signals.solved_share:.0%} > {t.max_solved_share:.0%} "
            "(learnability 0 at solve rate 1)"
        )
    if signals.proposals and signals.determinism_rejections > t.max_determinism_rejections:
        out.append(
            f"determinism_rejections: {signals.determinism_rejections:.0%} "
            f"> {t.max_determinism_rejections:.0%}"
        )
    if signals.valid and signals.mean_program_chars < t.min_program_chars:
        out.append(
            f"short_programs: mean {signals.mean_program_chars:.0f} chars "
            f"< {t.min_program_chars:.0f}"
        )
    return out
