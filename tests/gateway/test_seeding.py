"""The seeding stage (step 0) and the held-out set, over the real executor (Celery worker and
HTTP API), the real task store (SQLite), real Redis for the trainer stream, and the step journal.

The proposer is the one stand-in: the tiny random model used elsewhere never writes a valid
program, so `ProgramWriter` plays a base model that does (random small arithmetic programs, some
of them invalid or repeated), through the loop's own `Inference` port. Every task it is asked to
solve and every reference it is shown is recorded, which is how the tests see what the loop
sampled for training.
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from azr.core.dedup import program_key
from azr.core.tasks import IDENTITY_SEED, Answer, Proposal, Task, TaskType
from azr.loop.journal import StepJournal
from azr.loop.orchestrator import LoopPorts, Orchestrator
from azr.loop.ports import AnswerGen, ProposalGen, Sampling
from azr.loop.seeding import HELDOUT_FILE, SeedingStage, SeedPorts
from azr.settings import LoopSettings, Settings
from services.evaluation.executor_proc import executor_url
from services.gateway.heldout import HeldOutStore
from services.gateway.loop.adapters import HttpExecutor, RedisTrainer, StoreBuffers, StoreHistory
from services.gateway.runner import load_seed_file
from services.gateway.store import TaskStore


class ProgramWriter:
    """Proposes small programs (about one in six does not run; some repeat), a fixed answer to
    every solve request; records what it was shown and asked."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.asked: list[Task] = []  # tasks of the solver batches (n = 1): trained on
        self.shown: list[Task] = []  # every reference shown to the proposer
        self.propose_calls = 0
        self.force: list[Task] = []  # programs to propose verbatim (a model re-inventing one)

    def _program(self) -> tuple[str, str]:
        a, b = self.rng.randint(1, 6), self.rng.randint(0, 4)
        op = self.rng.choice(["+", "*", "-"])
        if self.rng.random() < 1 / 6:
            return f"def f(x):\n    return x {op} undefined_name", "1"
        return f"def f(x):\n    return x {op} {a} + {b}", str(self.rng.randint(0, 3))

    def propose(
        self, task_type: TaskType, references: list[list[Task]], sampling: Sampling
    ) -> list[ProposalGen]:
        self.propose_calls += 1
        out = []
        for refs in references:
            self.shown.extend(refs)
            if task_type is TaskType.INDUCTION:
                inputs = [str(self.rng.randint(0, 50)) for _ in range(4)]
                prop = Proposal(task_type, None, inputs, "a function of x", [], True)
            elif self.force:
                t = self.force.pop()
                prop = Proposal(task_type, t.program, list(t.inputs), None, [], True)
            else:
                program, inp = self._program()
                prop = Proposal(task_type, program, [inp], None, [], True)
            out.append(ProposalGen("p", [1, 2], [3, 4], [-0.5, -0.5], 0, proposal=prop))
            out[-1].references = list(refs)
        return out

    def solve(self, tasks: list[Task], n: int, sampling: Sampling) -> list[list[AnswerGen]]:
        if n == 1:  # learnability rollouts (n > 1) only score a proposal, never trained on
            self.asked.extend(tasks)
        return [
            [AnswerGen("a", [1], [5], [-0.1], 0, answer=Answer(t.task_type, "0", True))] * n
            for t in tasks
        ]

    def current_version(self) -> int:
        return 0

    def load_weights(self, version: int, path: str) -> dict[str, object]:
        raise AssertionError("no new weights in this test")


@pytest.fixture(scope="module")
def executor(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpExecutor]:
    data = tmp_path_factory.mktemp("seeding-executor")
    with executor_url(None, redis_url=redis_url, data_dir=data) as url:
        adapter = HttpExecutor(url)
        yield adapter
        adapter.close()


@pytest.fixture
def store(tmp_path: Path) -> TaskStore:
    return TaskStore(f"sqlite:///{tmp_path / 'gw.db'}", migrate_schema=True)


def _settings(tmp_path: Path, redis_url: str) -> Settings:
    s = Settings(data_dir=tmp_path / "data", redis_url=redis_url)
    tag = uuid.uuid4().hex[:8]
    s.trainer.stream = f"test-seeding-{tag}"
    s.trainer.latest_key = f"test-seeding-{tag}-latest"
    return s


CFG = {
    "batch_size": 4,
    "seed_tasks_per_type": 6,
    "heldout_tasks_per_type": 3,
    "seed_max_rounds": 25,
    "k_references": 2,
    "induction_inputs": 4,
    "n_rollouts": 2,
    "steps": 3,
    "seed": 1,
    "indist_eval_every": 3,
}


def _loop_ports(
    store: TaskStore,
    run_id: int,
    writer: ProgramWriter,
    executor: HttpExecutor,
    settings: Settings,
) -> tuple[LoopPorts, StoreBuffers, HeldOutStore]:
    """The loop's ports for one run over the real stores, with its buffers and held-out set."""
    buffers = StoreBuffers(store, run_id)
    heldout = HeldOutStore(store.sessions, run_id)
    assert settings.redis_url is not None
    trainer = RedisTrainer(redis.Redis.from_url(settings.redis_url), settings)
    ports = LoopPorts(writer, executor, buffers, trainer, StoreHistory(store, run_id), heldout)
    return ports, buffers, heldout


def _buffer_keys(buffers: StoreBuffers) -> set[str]:
    return {program_key(s.task.program) for tt in TaskType for s in buffers.snapshot(tt)}


def test_seeding_fills_buffers_and_heldout_never_reaches_training(
    executor: HttpExecutor, store: TaskStore, tmp_path: Path, redis_url: str
) -> None:
    settings = _settings(tmp_path, redis_url)
    run_id = store.create_run("seeding", {})
    writer = ProgramWriter(seed=3)
    ports, buffers, heldout = _loop_ports(store, run_id, writer, executor, settings)
    cfg = LoopSettings(**CFG)
    journal = StepJournal(settings.data_dir, run_id)
    orch = Orchestrator(run_id, cfg, ports, journal)
    orch.base_version = 0
    orch.seed()

    # every buffer full, every held-out slot filled, none of them sharing a program
    for tt in TaskType:
        snap = buffers.snapshot(tt)
        assert len(snap) >= 6, tt
        assert all(s.step == 0 for s in snap)
    assert heldout.counts() == dict.fromkeys(TaskType, 3)
    held_keys = heldout.program_keys()
    assert held_keys and not held_keys & _buffer_keys(buffers)
    # held-out induction tasks are built on held-out programs only
    assert {program_key(t.program) for t in heldout.tasks(TaskType.INDUCTION)} <= held_keys
    # step 0 is recorded with the stage's summary; its tasks carry their lineage
    steps, _ = store.steps(run_id)
    seeding = steps[0].metrics["seeding"]
    assert steps[0].step == 0 and seeding["done"] and seeding["rounds"] >= 2
    assert seeding["valid"] >= 9 and seeding["proposed"] > seeding["valid"]
    assert seeding["heldout"] == {"deduction": 3, "abduction": 3, "induction": 3}
    exported = (journal.dir / HELDOUT_FILE).read_text().splitlines()
    assert len(exported) == 9 and journal.is_done(0)

    # training steps: the model re-invents held-out programs, which must not be stored
    writer.asked.clear()
    writer.shown.clear()
    writer.force = heldout.tasks(TaskType.DEDUCTION) + heldout.tasks(TaskType.ABDUCTION)
    for step in range(1, 4):
        payload = orch.payload(orch.generate(step))
        orch.apply(step, payload)
        # the in-loop monitor solves the held-out set (greedy) at step 3 only
        indist = payload["metrics"].get("eval_indist")
        assert (indist is not None) == (step == 3)
    assert {k: indist[k]["n"] for k in ("deduction", "abduction", "induction")} == dict.fromkeys(
        ("deduction", "abduction", "induction"), 3
    )
    held_asked = {program_key(t.program) for t in writer.asked[-9:]}
    assert held_asked <= held_keys  # the monitor's questions were the held-out tasks ...
    writer.asked = writer.asked[:-9]  # ... which are evaluated, never trained on
    assert not writer.force  # every held-out program was proposed again
    assert writer.asked and writer.shown
    assert not {program_key(t.program) for t in writer.asked} & held_keys
    assert not {program_key(t.program) for t in writer.shown} & held_keys
    assert not _buffer_keys(buffers) & held_keys
    assert heldout.counts() == dict.fromkeys(TaskType, 3)  # fixed once drawn


def test_seeding_resumes_a_journaled_round_and_stops_at_the_cap(
    executor: HttpExecutor, store: TaskStore, tmp_path: Path
) -> None:
    run_id = store.create_run("resume", {})
    writer = ProgramWriter(seed=5)
    buffers = StoreBuffers(store, run_id)
    buffers.seed([])  # the identity seeds
    heldout = HeldOutStore(store.sessions, run_id)
    ports = SeedPorts(writer, executor, buffers, heldout)
    journal = StepJournal(tmp_path / "data", run_id).rounds()
    cfg = LoopSettings(**{**CFG, "seed_tasks_per_type": 40, "seed_max_rounds": 3})

    # round 1 is generated and journaled, then the gateway dies before applying it
    first = SeedingStage(run_id, cfg, ports, journal)
    payload = first.generate(1, first.needs(), 0)
    journal.write_pending(1, payload)
    assert payload["tasks"] and len(buffers.snapshot(TaskType.DEDUCTION)) == 1
    calls = writer.propose_calls

    summary = SeedingStage(run_id, cfg, ports, journal).run(0)
    # round 1 was applied from the journal, not proposed again: 2 more rounds of 3 types
    assert writer.propose_calls == calls + 2 * 3
    assert summary["rounds"] == 3 and summary["done"]
    # the totals count the round applied from the journal too
    rounds = [journal.load(r) or {} for r in (1, 2, 3)]
    assert summary["proposed"] == sum(r["proposed"] for r in rounds) > payload["proposed"]
    journaled = {(d["task"]["program"], tuple(d["task"]["inputs"])) for d in payload["tasks"]}
    in_buffers = {(s.task.program, s.task.inputs) for tt in TaskType for s in buffers.snapshot(tt)}
    in_heldout = {(t.program, t.inputs) for t in heldout.tasks()}
    assert journaled <= in_buffers | in_heldout
    # the cap ended the stage before the 40-task target
    assert summary["buffers"]["deduction"] < 40
    # a third start finds everything applied: nothing is proposed, nothing changes
    before = (len(buffers.snapshot(TaskType.ABDUCTION)), heldout.counts())
    again = SeedingStage(run_id, cfg, ports, journal).run(0)
    assert writer.propose_calls == calls + 2 * 3
    assert again["rounds"] == 3 and again["proposed"] == summary["proposed"]
    assert (len(buffers.snapshot(TaskType.ABDUCTION)), heldout.counts()) == before


def test_a_reused_heldout_set_is_validated_held_out_again_and_never_drawn(
    executor: HttpExecutor, store: TaskStore, tmp_path: Path, redis_url: str
) -> None:
    # run A draws its held-out set and exports it, as `make reproduce` keeps it
    first_id = store.create_run("first", {})
    first = HeldOutStore(store.sessions, first_id)
    seed_ports = SeedPorts(ProgramWriter(seed=7), executor, StoreBuffers(store, first_id), first)
    seed_ports.buffers.seed([])
    cfg = LoopSettings(**{**CFG, "task_types": ["deduction", "abduction"]})
    SeedingStage(first_id, cfg, seed_ports, StepJournal(tmp_path / "a", first_id).rounds()).run(0)
    exported = first.export(tmp_path / HELDOUT_FILE)
    drawn = load_seed_file(exported)
    assert len(drawn) == 6
    # the file as another run gets it: one gold output forged, one program that fails, one line
    # repeated, and the identity seed (already in the new run's buffer)
    forged = dataclasses.replace(drawn[0], outputs=("'forged'",))
    broken = Task(TaskType.DEDUCTION, "def f(x):\n    return x / 0", ("1",), ("1",))
    identity = dataclasses.replace(IDENTITY_SEED, inputs=("5",), outputs=("5",))
    reused = [forged, *drawn[1:], drawn[1], broken, identity]

    run_id = store.create_run("second", {})
    writer = ProgramWriter(seed=8)
    settings = _settings(tmp_path, redis_url)
    ports, buffers, heldout = _loop_ports(store, run_id, writer, executor, settings)
    # heldout_tasks_per_type 0: the reused set alone decides the held-out set
    cfg = LoopSettings(
        **{**CFG, "task_types": ["deduction", "abduction"], "heldout_tasks_per_type": 0}
    )
    journal = StepJournal(tmp_path / "b", run_id)
    orch = Orchestrator(run_id, cfg, ports, journal, heldout_tasks=reused)
    orch.base_version = 0
    orch.seed()

    # exactly run A's tasks, with the executor's outputs (the forged one corrected)
    got = {(t.task_type, t.program, t.inputs, t.outputs) for t in heldout.tasks()}
    assert got == {(t.task_type, t.program, t.inputs, t.outputs) for t in drawn}
    rounds = journal.rounds()
    assert (rounds.load(1) or {})["kept"] == 6 and (rounds.load(1) or {})["imported"] == 9
    # no proposal was held out: every later round filled the buffers only
    assert all(
        d["dest"] == "buffer"
        for r in range(2, rounds.last_done() + 1)
        for d in (rounds.load(r) or {})["tasks"]
    )
    assert len(buffers.snapshot(TaskType.DEDUCTION)) >= 6
    assert not _buffer_keys(buffers) & heldout.program_keys()
    assert (journal.dir / HELDOUT_FILE).read_text().count("\n") == 6
