"""What the orchestrator needs from the other services, as small Protocols plus the records
that cross them. The adapters module implements these over HTTP, Redis and the task store; the
orchestrator itself never sees a transport."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from azr.core.tasks import Answer, Proposal, Role, Task, TaskType


@dataclass(frozen=True)
class Sampling:
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 512
    seed: int | None = None


@dataclass
class Generation:
    """One sampled completion with what the trainer needs to learn from it."""

    text: str
    prompt_token_ids: list[int]
    completion_token_ids: list[int]
    logprobs: list[float]
    weight_version: int
    answer_closed: bool = False  # the inference service wrote </answer> after the last block
    temperature: float = 1.0  # what it was sampled at: the trainer scores it at the same T


@dataclass
class ProposalGen(Generation):
    proposal: Proposal = field(default_factory=lambda: Proposal(TaskType.DEDUCTION))
    references: list[Task] = field(default_factory=list)
    # a two-stage proposal's second stage (the input, written after the program): a sequence of
    # its own, trained with the proposal's reward
    continuation: Generation | None = None


@dataclass
class AnswerGen(Generation):
    answer: Answer = field(default_factory=lambda: Answer(TaskType.DEDUCTION, "", False))


@dataclass(frozen=True)
class Validation:
    valid: bool
    status: str
    outputs: tuple[str, ...]
    reason: str | None = None


@dataclass(frozen=True)
class StoredTask:
    """A task from the buffer with its database id (None for the in-memory seed)."""

    id: int | None
    task: Task
    step: int = 0


@dataclass(frozen=True)
class NewTask:
    """A validated proposal on its way into the buffer, with its lineage."""

    task: Task
    step: int
    proposer_version: int
    solve_rate: float | None
    validation_status: str
    n_rollouts: int = 0


class Inference(Protocol):
    def propose(
        self, task_type: TaskType, references: list[list[Task]], sampling: Sampling
    ) -> list[ProposalGen]:
        """One proposal per reference set (each prompt shows its own references)."""
        ...

    def solve(self, tasks: list[Task], n: int, sampling: Sampling) -> list[list[AnswerGen]]:
        """`n` answers per task, in task order."""
        ...

    def current_version(self) -> int: ...

    def load_weights(self, version: int, path: str) -> dict[str, Any]: ...


class Executor(Protocol):
    def validate(
        self, items: list[tuple[TaskType, str, list[str], str | None]]
    ) -> list[Validation]:
        """(task_type, program with imports, inputs, message) -> gold outputs or a reason."""
        ...

    def verify(self, tasks: list[Task], answers: list[Answer]) -> list[bool]:
        """Grade each answer against its task (abduction by re-execution, induction on the
        hidden pairs, deduction by literal equality), all inside the sandbox."""
        ...


class Buffers(Protocol):
    """The task buffers of one run (the gateway's database)."""

    def snapshot(self, task_type: TaskType) -> list[StoredTask]:
        """Every task now in the buffer (what references and solver batches sample from)."""
        ...

    def known_fingerprints(self, task_type: TaskType, fingerprints: list[str]) -> set[str]:
        """Which of these normalised fingerprints the buffer already holds (in any status)."""
        ...

    def seed(self, tasks: list[Task]) -> int: ...

    def add(self, tasks: list[NewTask]) -> int:
        """Insert validated tasks with their lineage; a task already stored (same normalised
        fingerprint) is skipped, which makes a replayed step's insert a no-op."""
        ...


class HeldOut(Protocol):
    """The run's held-out in-distribution set (seeding stage), stored apart from the buffers."""

    def add(self, tasks: list[Task], proposer_version: int | None) -> int: ...

    def counts(self) -> dict[TaskType, int]: ...

    def tasks(self, task_type: TaskType | None = None) -> list[Task]: ...

    def program_keys(self) -> set[str]:
        """`azr.core.dedup.program_key` of every held-out program."""
        ...

    def export(self, path: Path) -> Path: ...


class Trainer(Protocol):
    def publish(self, batch: dict[str, Any]) -> str:
        """Put a reward batch on the stream; idempotent by `batch_id`."""
        ...

    def latest_version(self) -> tuple[int, str | None]:
        """(version, checkpoint path) of the newest announced weights; (0, None) before any."""
        ...

    def batch_states(self, batch_ids: list[str]) -> dict[str, str]:
        """Per batch id: "trained", "queued", "dead: <reason>" or "lost" (on no stream)."""
        ...


class History(Protocol):
    """Per-run step records and metrics (the gateway's database)."""

    def record_step(self, step: int, metrics: dict[str, Any]) -> None: ...

    def record_weights(self, version: int, path: str | None, step: int) -> None: ...


ROLES = (Role.PROPOSE, Role.SOLVE)
