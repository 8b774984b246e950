"""Scripted in-memory implementations of the loop's ports (`azr.loop.ports`).

These are test doubles by design: the loop is transport-free, and these tests pin its own logic
(rewards, staleness, induction, replay) without HTTP, Redis or a model. The real adapters are
exercised in tests/gateway. The executor runs the tests' own trusted programs in-process; it is
never given model output.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any

from azr.core import dedup
from azr.core.tasks import Answer, Proposal, Task, TaskType
from azr.loop.ports import (
    AnswerGen,
    Generation,
    NewTask,
    ProposalGen,
    Sampling,
    StoredTask,
    Validation,
)


def run_program(source: str, literal_input: str) -> str:
    """Call f on one literal input; the result's repr is the gold output."""
    scope: dict[str, Any] = {}
    exec(source, scope)  # trusted: only the programs written in these tests
    return repr(scope["f"](ast.literal_eval(literal_input)))


@dataclass
class ScriptedInference:
    """Proposes the next scripted program per task type; answers through `solver`."""

    programs: dict[TaskType, list[str | None]]
    inputs: list[str] = field(default_factory=lambda: ["3"])
    # (task, answer index) -> answer value, None for an unparseable one; default: the right answer
    solver: Any = None
    version: int = 0
    propose_calls: int = 0
    loads: list[int] = field(default_factory=list)
    proposed_refs: list[list[Task]] = field(default_factory=list)
    two_stage: bool = False  # proposals carry a second stage (the input) like the opener's
    solve_temperatures: list[float] = field(default_factory=list)

    def propose(
        self, task_type: TaskType, references: list[list[Task]], sampling: Sampling
    ) -> list[ProposalGen]:
        self.propose_calls += 1
        out = []
        for refs in references:
            self.proposed_refs.append(refs)
            queue = self.programs.get(task_type, [])
            program = queue.pop(0) if queue else None
            fmt = program is not None or task_type is TaskType.INDUCTION
            prop = Proposal(task_type, program, list(self.inputs), "double it", [], fmt, None)
            out.append(
                ProposalGen(
                    text="<answer>...</answer>",
                    prompt_token_ids=[1, 2, 3],
                    completion_token_ids=[4, 5],
                    logprobs=[-0.1, -0.2],
                    weight_version=self.version,
                    temperature=sampling.temperature,
                    proposal=prop,
                    references=refs,
                    continuation=Generation(
                        "3)",
                        [1, 2, 3, 4, 5, 9],
                        [6, 7],
                        [-0.4, -0.5],
                        self.version,
                        temperature=sampling.temperature,
                    )
                    if self.two_stage
                    else None,
                )
            )
        return out

    def solve(self, tasks: list[Task], n: int, sampling: Sampling) -> list[list[AnswerGen]]:
        self.solve_temperatures.append(sampling.temperature)
        result = []
        for task in tasks:
            gens = []
            for i in range(n):
                value = self.solver(task, i) if self.solver else right_answer(task)
                well_formed = value is not None
                gens.append(
                    AnswerGen(
                        "<answer>v</answer>",
                        [1, 2],
                        [7],
                        [-0.3],
                        self.version,
                        temperature=sampling.temperature,
                        answer=Answer(task.task_type, value or "", well_formed),
                    )
                )
            result.append(gens)
        return result

    def current_version(self) -> int:
        return self.version

    def load_weights(self, version: int, path: str) -> dict[str, Any]:
        self.version = version
        self.loads.append(version)
        return {"version": version}


def right_answer(task: Task) -> str:
    if task.task_type is TaskType.DEDUCTION:
        return task.outputs[0]
    if task.task_type is TaskType.ABDUCTION:
        return task.inputs[0]
    return task.program


class ScriptedExecutor:
    """Validates by running the program; verifies deduction by equality of values and the
    other types by re-running the answer."""

    def __init__(self) -> None:
        self.validated: list[tuple[TaskType, str, list[str], str | None]] = []

    def validate(
        self, items: list[tuple[TaskType, str, list[str], str | None]]
    ) -> list[Validation]:
        self.validated.extend(items)
        out = []
        for _, source, inputs, _ in items:
            try:
                outputs = tuple(run_program(source, i) for i in inputs)
            except Exception as exc:
                out.append(Validation(False, "error", (), str(exc)))
            else:
                out.append(Validation(True, "ok", outputs))
        return out

    def verify(self, tasks: list[Task], answers: list[Answer]) -> list[bool]:
        verdicts = []
        for task, answer in zip(tasks, answers, strict=True):
            try:
                if task.task_type is TaskType.DEDUCTION:
                    ok = ast.literal_eval(answer.value) == ast.literal_eval(task.outputs[0])
                elif task.task_type is TaskType.ABDUCTION:
                    ok = run_program(task.source, answer.value) == task.outputs[0]
                else:
                    ok = all(
                        run_program(answer.value, i) == o
                        for i, o in zip(task.inputs, task.outputs, strict=True)
                    )
            except Exception:
                ok = False
            verdicts.append(ok)
        return verdicts


class MemoryBuffers:
    def __init__(self) -> None:
        self.tasks: dict[TaskType, list[StoredTask]] = {t: [] for t in TaskType}
        self.fingerprints: set[str] = set()
        self.added: list[NewTask] = []

    def _fp(self, task: Task) -> str:
        return dedup.task_fingerprint(task.task_type, task.program, list(task.inputs))

    def snapshot(self, task_type: TaskType) -> list[StoredTask]:
        return list(self.tasks[task_type])

    def known_fingerprints(self, task_type: TaskType, fingerprints: list[str]) -> set[str]:
        return {f for f in fingerprints if f in self.fingerprints}

    def _insert(self, task: Task, step: int) -> bool:
        fp = self._fp(task)
        if fp in self.fingerprints:
            return False
        self.fingerprints.add(fp)
        self.tasks[task.task_type].append(StoredTask(len(self.fingerprints), task, step))
        return True

    def seed(self, tasks: list[Task]) -> int:
        n = 0
        for t in tasks:
            # the identity seed serves deduction and abduction alike
            types = (
                [TaskType.DEDUCTION, TaskType.ABDUCTION]
                if t.task_type is TaskType.DEDUCTION
                else [t.task_type]
            )
            for tt in types:
                n += self._insert(Task(tt, t.program, t.inputs, t.outputs), 0)
        return n

    def add(self, tasks: list[NewTask]) -> int:
        n = 0
        for t in tasks:
            if self._insert(t.task, t.step):
                self.added.append(t)
                n += 1
        return n


class MemoryTrainer:
    """Publishes into a list; `auto` trains instantly (one new version per batch)."""

    def __init__(self, auto: bool = True, fail_publishes: int = 0) -> None:
        self.auto = auto
        self.batches: list[dict[str, Any]] = []
        self.version = 0
        self.fail_publishes = fail_publishes

    def publish(self, batch: dict[str, Any]) -> str:
        if self.fail_publishes > 0:
            self.fail_publishes -= 1
            raise ConnectionError("scripted: the stream is down")
        if any(b["batch_id"] == batch["batch_id"] for b in self.batches):
            return "dup"  # idempotent by batch_id, like the trainer
        self.batches.append(batch)
        if self.auto:
            self.version += 1
        return str(len(self.batches))

    def latest_version(self) -> tuple[int, str | None]:
        return self.version, (f"/ckpt/{self.version}" if self.version else None)

    def batch_states(self, batch_ids: list[str]) -> dict[str, str]:
        # with `auto` every published batch trains at once; otherwise it waits in the queue
        published = {b["batch_id"] for b in self.batches}
        return {
            bid: ("trained" if self.auto else "queued") if bid in published else "lost"
            for bid in batch_ids
        }


class MemoryHistory:
    def __init__(self) -> None:
        self.steps: dict[int, dict[str, Any]] = {}
        self.weights: list[tuple[int, str | None, int]] = []

    def record_step(self, step: int, metrics: dict[str, Any]) -> None:
        self.steps[step] = metrics

    def record_weights(self, version: int, path: str | None, step: int) -> None:
        self.weights.append((version, path, step))
