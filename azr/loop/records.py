"""What one step produces before anything is written: scored proposals and answers, the tasks
to store, the reward batch and the metrics. A step's writes are derived only from this, so a
step that was journaled before a crash can be replayed exactly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from azr.core.tasks import Task, TaskType

from .ports import AnswerGen, ProposalGen, Validation


@dataclass
class ScoredProposal:
    gen: ProposalGen
    task_type: TaskType
    task: Task | None = None  # set when the executor accepted it
    validation: Validation | None = None
    duplicate: bool = False  # same normalised (program, inputs) as a buffered or earlier task
    trivial: bool = False
    solve_rate: float | None = None  # mean of the learnability rollouts
    learnability: float = 0.0
    reward: float = -1.0
    rollout_tokens: int = 0

    @property
    def valid(self) -> bool:
        return self.task is not None


@dataclass
class ScoredAnswer:
    gen: AnswerGen
    task: Task
    task_id: int | None
    correct: bool = False
    reward: float = -1.0


@dataclass
class StepOutcome:
    run_id: int
    step: int
    weight_version: int
    staleness: int
    proposals: dict[TaskType, list[ScoredProposal]] = field(default_factory=dict)
    answers: dict[TaskType, list[ScoredAnswer]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def batch_id(self) -> str:
        return batch_id(self.run_id, self.step)


def batch_id(run_id: int, step: int) -> str:
    """Deterministic, so a replayed step publishes the same id and the trainer can skip it."""
    return f"{run_id}:{step}"


def task_to_json(task: Task) -> dict[str, Any]:
    return {
        "task_type": task.task_type.value,
        "program": task.program,
        "inputs": list(task.inputs),
        "outputs": list(task.outputs),
        "message": task.message,
        "imports": list(task.imports),
    }


def task_from_json(data: dict[str, Any]) -> Task:
    return Task(
        task_type=TaskType(data["task_type"]),
        program=str(data["program"]),
        inputs=tuple(str(x) for x in data["inputs"]),
        outputs=tuple(str(x) for x in data.get("outputs", ())),
        message=str(data.get("message") or ""),
        imports=tuple(str(x) for x in data.get("imports", ())),
    )
