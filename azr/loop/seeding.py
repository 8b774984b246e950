"""The seeding stage (step 0; the reference's "InitSeeding", azr-reference.md §6.2).

Before the first update the base model proposes, with no parameter updates, until each task
type's buffer holds `seed_tasks_per_type` validated, de-duplicated tasks. The same proposals
also fill a fixed held-out set of `heldout_tasks_per_type` tasks per type, stored apart from the
buffers (the in-distribution yardstick). Held-out and buffer tasks never share a program.

One round: for every task type still short, `seed_batch_size` proposals (each prompt with its
own references, like a step), one executor batch to validate them, de-duplication, then the
round's tasks are journaled and applied, exactly like a step. Rounds repeat until everything is
full or `seed_max_rounds` is reached; a restarted gateway re-applies a journaled round and
continues from the counts in the database, so a crash loses nothing and adds nothing twice.

A run can reuse another run's held-out set instead of drawing its own (`heldout_file`, the
JSONL a run exports): round 1 then validates those tasks with the executor (its outputs win,
tasks that fail are dropped) and holds them out, and the later rounds fill the buffers only.
Two runs with one held-out set compare on the same yardstick, and the second pays no proposals
for it.

Departures from the reference: (1) rounds stop at a cap instead of looping forever; (2) a
deduction/abduction triplet goes into both buffers (as the reference's shared seed pool) but is
counted per buffer; (3) induction tasks are proposed in the same rounds, from the programs
stored so far, instead of after the deduction/abduction pool is complete; (4) no learnability
rollouts (the reference scores nothing either), so seeded tasks have no solve rate.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from azr.core import dedup, sampling
from azr.core.tasks import Task, TaskType
from azr.settings import LoopSettings

from .journal import StepJournal
from .ports import Buffers, Executor, HeldOut, Inference, NewTask, ProposalGen, Sampling
from .records import task_from_json, task_to_json

log = logging.getLogger("azr.loop")

# The exported held-out set, beside the run's journal (what `azr eval --bench indist` reads).
HELDOUT_FILE = "heldout.jsonl"
HELDOUT = "heldout"
BUFFER = "buffer"
PAIRED = (TaskType.DEDUCTION, TaskType.ABDUCTION)  # a triplet serves either buffer


@dataclasses.dataclass
class SeedPorts:
    inference: Inference
    executor: Executor
    buffers: Buffers
    heldout: HeldOut | None


class SeedingStage:
    def __init__(
        self,
        run_id: int,
        cfg: LoopSettings,
        ports: SeedPorts,
        journal: StepJournal,
        *,
        gate: Callable[[], None] = lambda: None,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        imported_heldout: list[Task] | None = None,
    ) -> None:
        self.run_id = run_id
        self.cfg = cfg
        self.p = ports
        self.journal = journal
        self.gate = gate
        self.on_progress = on_progress
        self.task_types = [TaskType(t) for t in cfg.task_types]
        self.imported = None
        if imported_heldout is not None and ports.heldout is not None:
            self.imported = [t for t in imported_heldout if t.task_type in self.task_types]
        self.held_target = cfg.heldout_tasks_per_type if ports.heldout is not None else 0
        if self.imported is not None:  # the reused set is the held-out set, whatever its size
            self.held_target = 0
        self.totals: dict[str, int] = {"proposed": 0, "valid": 0, "rejected": 0}

    # ------------------------------------------------------------------ counts
    def buffer_counts(self) -> dict[TaskType, int]:
        return {tt: len(self.p.buffers.snapshot(tt)) for tt in self.task_types}

    def held_counts(self) -> dict[TaskType, int]:
        if self.p.heldout is None:
            return dict.fromkeys(self.task_types, 0)
        counts = self.p.heldout.counts()
        return {tt: counts.get(tt, 0) for tt in self.task_types}

    def needs(self) -> dict[TaskType, tuple[int, int]]:
        """(buffer, held-out) tasks still missing per task type."""
        buf, held = self.buffer_counts(), self.held_counts()
        return {
            tt: (
                max(0, self.cfg.seed_tasks_per_type - buf[tt]),
                max(0, self.held_target - held[tt]),
            )
            for tt in self.task_types
        }

    def progress(self, rounds: int, done: bool = False) -> dict[str, Any]:
        buf, held = self.buffer_counts(), self.held_counts()
        return {
            "stage": "seeding",
            "done": done,
            "rounds": rounds,
            "max_rounds": self.cfg.seed_max_rounds,
            "target": self.cfg.seed_tasks_per_type,
            "heldout_target": self.held_target,
            "buffers": {tt.value: buf[tt] for tt in self.task_types},
            "heldout": {tt.value: held[tt] for tt in self.task_types},
            **self.totals,
        }

    # ------------------------------------------------------------------ the stage
    def run(self, proposer_version: int) -> dict[str, Any]:
        rounds = max(self.journal.last_done(), 0)  # rounds are numbered from 1
        for done in range(1, rounds + 1):  # the totals of rounds applied before a restart
            self._count(self.journal.load(done) or {})
        if self.imported is not None and rounds == 0:
            payload = self.journal.pending(1)
            if payload is None:
                payload = self.import_heldout(1, self.imported)
                self.journal.write_pending(1, payload)
            self.apply(1, payload)
            rounds = 1
            log.info(
                "run %s: held out %s of %s reused tasks (the rest failed validation or repeat)",
                self.run_id,
                payload["kept"],
                payload["imported"],
            )
        while True:
            self.gate()
            nr = rounds + 1
            payload = self.journal.pending(nr)
            if payload is None:
                needs = self.needs()
                if not any(b or h for b, h in needs.values()):
                    break
                if rounds >= self.cfg.seed_max_rounds:
                    log.warning(
                        "run %s: seeding stopped after %s rounds with needs %s",
                        self.run_id,
                        rounds,
                        {tt.value: n for tt, n in needs.items()},
                    )
                    break
                payload = self.generate(nr, needs, proposer_version)
                self.gate()
                self.journal.write_pending(nr, payload)
            self.apply(nr, payload)
            rounds = nr
            summary = self.progress(rounds)
            log.info(
                "run %s seeding round %s: buffers %s held-out %s",
                self.run_id,
                rounds,
                summary["buffers"],
                summary["heldout"],
            )
            if self.on_progress:
                self.on_progress(summary)
        return self.progress(rounds, done=True)

    # ------------------------------------------------------------------ one round
    def import_heldout(self, nr: int, tasks: list[Task]) -> dict[str, Any]:
        """Round `nr` as the reuse of another run's held-out tasks: validated like proposals
        (the executor's outputs replace the file's); repeats and programs already in a buffer
        (the seeds) dropped, so held-out and buffer tasks still never share a program."""
        items = [(t.task_type, t.source, list(t.inputs), t.message or None) for t in tasks]
        results = self.p.executor.validate(items) if items else []
        in_buffers = {
            dedup.program_key(s.task.program)
            for tt in TaskType
            for s in self.p.buffers.snapshot(tt)
        }
        seen: set[str] = set()
        kept: list[Task] = []
        for task, res in zip(tasks, results, strict=True):
            tt = task.task_type
            fp = dedup.task_fingerprint(
                TaskType.DEDUCTION if tt in PAIRED else tt, task.program, list(task.inputs)
            )
            if not res.valid or fp in seen or dedup.program_key(task.program) in in_buffers:
                continue
            seen.add(fp)
            kept.append(dataclasses.replace(task, outputs=tuple(res.outputs)))
        return {
            "round": nr,
            "imported": len(tasks),
            "kept": len(kept),
            "tasks": [{"dest": HELDOUT, "task": task_to_json(t)} for t in kept],
        }

    def plan(self, nr: int, needs: dict[TaskType, tuple[int, int]]) -> dict[TaskType, list[Any]]:
        """Per task type, one (destination, references) pair per prompt of this round. The
        held-out share of the prompts follows what is still missing on each side."""
        size = self.cfg.seed_batch_size or self.cfg.batch_size
        buffers = {tt: [s.task for s in self.p.buffers.snapshot(tt)] for tt in TaskType}
        held: dict[TaskType, list[Task]] = {tt: [] for tt in TaskType}
        if self.p.heldout is not None and needs.get(TaskType.INDUCTION, (0, 0))[1]:
            held = {tt: self.p.heldout.tasks(tt) for tt in PAIRED} | {TaskType.INDUCTION: []}
        out: dict[TaskType, list[Any]] = {}
        for tt, (need_buf, need_held) in needs.items():
            if not need_buf and not need_held:
                continue
            n_held = 0
            if need_held:
                n_held = min(size, math.ceil(size * need_held / (need_buf + need_held)))
            rng = random.Random(f"{self.cfg.seed}:{self.run_id}:seed:{nr}:{tt.value}")
            prompts: list[Any] = []
            for i in range(size):
                dest = HELDOUT if i < n_held else BUFFER
                if tt == TaskType.INDUCTION:
                    # a held-out induction task reuses a held-out program, never a training one
                    src = held if dest == HELDOUT else buffers
                    ded, abd = src[TaskType.DEDUCTION], src[TaskType.ABDUCTION]
                    if not ded and not abd:
                        continue
                    refs = [sampling.sample_induction_program(ded, abd, rng)]
                else:
                    refs = sampling.sample_references(buffers[tt], self.cfg.k_references, rng)
                prompts.append((dest, refs))
            out[tt] = prompts
        return out

    def generate(
        self, nr: int, needs: dict[TaskType, tuple[int, int]], proposer_version: int
    ) -> dict[str, Any]:
        plan = self.plan(nr, needs)
        temp = Sampling(self.cfg.temperature, self.cfg.top_p, self.cfg.max_tokens, None)
        gens: dict[TaskType, list[ProposalGen]] = {}
        with ThreadPoolExecutor(max_workers=max(1, len(plan))) as pool:
            futures = {
                tt: pool.submit(self.p.inference.propose, tt, [r for _, r in prompts], temp)
                for tt, prompts in plan.items()
                if prompts
            }
            for tt, fut in futures.items():
                gens[tt] = fut.result()
        self.gate()
        candidates = self.validate(plan, gens)
        accepted = self.deduplicate(candidates, needs)
        return {
            "round": nr,
            "proposer_version": proposer_version,
            "proposed": sum(len(g) for g in gens.values()),
            "valid": len(candidates),
            # valid but a duplicate, a held-out program, or beyond what was still missing
            "rejected": len(candidates) - len(accepted),
            "tasks": [{"dest": d, "task": task_to_json(t)} for d, t in accepted],
        }

    def validate(
        self, plan: dict[TaskType, list[Any]], gens: dict[TaskType, list[ProposalGen]]
    ) -> list[tuple[str, Task]]:
        todo: list[tuple[str, TaskType, ProposalGen]] = []
        items: list[tuple[TaskType, str, list[str], str | None]] = []
        for tt, props in gens.items():
            for (dest, _), gen in zip(plan[tt], props, strict=True):
                prop = gen.proposal
                if tt == TaskType.INDUCTION and prop.program is None and gen.references:
                    prop.program, prop.imports = (
                        gen.references[0].program,
                        list(gen.references[0].imports),
                    )
                if not prop.parsed or prop.program is None:
                    continue
                source = "\n".join([*prop.imports, prop.program]) if prop.imports else prop.program
                todo.append((dest, tt, gen))
                items.append((tt, source, list(prop.inputs), prop.message))
        results = self.p.executor.validate(items) if items else []
        out: list[tuple[str, Task]] = []
        for (dest, tt, gen), res in zip(todo, results, strict=True):
            if not res.valid:
                continue
            prop = gen.proposal
            assert prop.program is not None
            task = Task(
                tt,
                prop.program,
                tuple(prop.inputs),
                tuple(res.outputs),
                prop.message or "",
                tuple(prop.imports),
            )
            out.append((dest, task))
        return out

    def deduplicate(
        self, candidates: list[tuple[str, Task]], needs: dict[TaskType, tuple[int, int]]
    ) -> list[tuple[str, Task]]:
        """Keep new tasks only, up to what each side still needs. Held-out candidates go
        first: a program held out in this round cannot also enter a buffer."""
        buffer_programs = {
            dedup.program_key(s.task.program)
            for tt in TaskType
            for s in self.p.buffers.snapshot(tt)
        }
        held_programs = self.p.heldout.program_keys() if self.p.heldout is not None else set()
        left = {tt: list(n) for tt, n in needs.items()}
        seen: set[str] = set()
        out: list[tuple[str, Task]] = []
        ordered = [c for c in candidates if c[0] == HELDOUT] + [
            c for c in candidates if c[0] == BUFFER
        ]
        for dest, task in ordered:
            tt = task.task_type
            key = dedup.program_key(task.program)
            fp = dedup.task_fingerprint(
                TaskType.DEDUCTION if tt in PAIRED else tt, task.program, list(task.inputs)
            )
            slot = 1 if dest == HELDOUT else 0
            if fp in seen or left[tt][slot] <= 0:
                continue
            if dest == HELDOUT:
                # induction held-out tasks reuse held-out programs by construction
                clash = key in buffer_programs or (tt in PAIRED and key in held_programs)
            else:
                clash = key in held_programs or self._in_buffer(tt, task)
            if clash:
                continue
            seen.add(fp)
            left[tt][slot] -= 1
            (held_programs if dest == HELDOUT else buffer_programs).add(key)
            out.append((dest, task))
        return out

    def _in_buffer(self, tt: TaskType, task: Task) -> bool:
        targets = PAIRED if tt in PAIRED else (tt,)
        return any(
            self.p.buffers.known_fingerprints(
                t, [dedup.task_fingerprint(t, task.program, list(task.inputs))]
            )
            for t in targets
        )

    # ------------------------------------------------------------------ effects
    def apply(self, nr: int, payload: dict[str, Any]) -> None:
        version = int(payload.get("proposer_version", 0))
        new: list[NewTask] = []
        held: list[Task] = []
        for item in payload.get("tasks", []):
            task = task_from_json(item["task"])
            if item["dest"] == HELDOUT:
                held.append(task)
                continue
            targets = PAIRED if task.task_type in PAIRED else (task.task_type,)
            for tt in targets:
                if tt in self.task_types:
                    copy = dataclasses.replace(task, task_type=tt)
                    new.append(NewTask(copy, 0, version, None, "seeded"))
        if new:
            self.p.buffers.add(new)
        if held and self.p.heldout is not None:
            self.p.heldout.add(held, version)
        self._count(payload)
        self.journal.mark_done(nr)

    def _count(self, payload: dict[str, Any]) -> None:
        for key in self.totals:
            self.totals[key] += int(payload.get(key, 0))
