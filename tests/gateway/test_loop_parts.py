"""The loop's parts with real components: the step journal on disk, rewards assembly checked by
the trainer's own batch schema, metrics against hand-counted values, and the store/Redis
adapters (real SQLite database, real redis-server) including a replayed step."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from azr.contracts.trainer import RewardBatch, TrainHparams
from azr.core.tasks import IDENTITY_SEED, Answer, Proposal, Role, Task, TaskType, group_key
from azr.loop import metrics as loop_metrics
from azr.loop.journal import StepJournal
from azr.loop.orchestrator import LoopPorts, Orchestrator
from azr.loop.ports import AnswerGen, ProposalGen, Validation
from azr.loop.records import ScoredAnswer, ScoredProposal, StepOutcome
from azr.loop.rewards import reward_batch, score_answer, score_proposal
from azr.settings import LoopSettings, Settings
from services.gateway.loop.adapters import RedisTrainer, StoreBuffers, StoreHistory
from services.gateway.store import TaskFilter, TaskStore


def _pgen(
    tt: TaskType,
    *,
    fmt: bool = True,
    program: str | None = "def f(x):\n    return x * 2",
    inputs: list[str] | None = None,
    version: int = 3,
) -> ProposalGen:
    return ProposalGen(
        text="<think>t</think><answer>...</answer>",
        prompt_token_ids=[1, 2, 3],
        completion_token_ids=[4, 5, 6, 7],
        logprobs=[-0.1, -0.2, -0.3, -0.4],
        weight_version=version,
        proposal=Proposal(
            tt, program, inputs or ["3"], None, [], fmt, None if program else "no code"
        ),
    )


def _agen(tt: TaskType, value: str, fmt: bool = True, version: int = 3) -> AnswerGen:
    return AnswerGen("x", [1, 2], [9, 8], [-0.5, -0.5], version, answer=Answer(tt, value, fmt))


def _task(program: str = "def f(x):\n    return x * 2", inp: str = "3", out: str = "6") -> Task:
    return Task(TaskType.DEDUCTION, program, (inp,), (out,))


def _outcome() -> StepOutcome:
    out = StepOutcome(run_id=7, step=2, weight_version=3, staleness=1)
    ok = ScoredProposal(
        _pgen(TaskType.DEDUCTION),
        TaskType.DEDUCTION,
        task=_task(),
        validation=Validation(True, "ok", ("6",)),
    )
    score_proposal(ok, [True, False, False, False], trivial_reward=-0.5)
    bad_format = ScoredProposal(
        _pgen(TaskType.DEDUCTION, fmt=False, program=None), TaskType.DEDUCTION
    )
    score_proposal(bad_format, [], trivial_reward=-0.5)
    nondet = ScoredProposal(
        _pgen(TaskType.DEDUCTION),
        TaskType.DEDUCTION,
        validation=Validation(False, "error", (), "nondeterministic: two runs differ"),
    )
    score_proposal(nondet, [], trivial_reward=-0.5)
    solved = ScoredProposal(
        _pgen(TaskType.DEDUCTION, program="def f(x):\n    return x"),
        TaskType.DEDUCTION,
        task=_task("def f(x):\n    return x", "3", "3"),
        validation=Validation(True, "ok", ("3",)),
        trivial=True,
    )
    score_proposal(solved, [True, True], trivial_reward=0.0)
    out.proposals[TaskType.DEDUCTION] = [ok, bad_format, nondet, solved]
    answers = [
        ScoredAnswer(_agen(TaskType.DEDUCTION, "6"), _task(), 1, correct=True),
        ScoredAnswer(_agen(TaskType.DEDUCTION, "7"), _task(), 1, correct=False),
        ScoredAnswer(_agen(TaskType.DEDUCTION, "", fmt=False), _task(), 1),
    ]
    for a in answers:
        score_answer(a)
    out.answers[TaskType.DEDUCTION] = answers
    out.timings = {"propose": 2.0, "solve": 2.0}
    return out


def test_proposer_rewards_follow_the_composite_mapping() -> None:
    out = _outcome()
    ok, bad, nondet, solved = out.proposals[TaskType.DEDUCTION]
    assert ok.solve_rate == pytest.approx(0.25) and ok.reward == pytest.approx(0.75)
    assert bad.reward == -1.0 and nondet.reward == -1.0
    # always solved -> learnability 0 -> the configured trivial reward (here the paper's 0)
    assert solved.learnability == 0.0 and solved.reward == 0.0
    assert [a.reward for a in out.answers[TaskType.DEDUCTION]] == [1.0, -0.5, -1.0]


def test_reward_batch_is_accepted_by_the_trainer_schema() -> None:
    out = _outcome()
    # each sample carries the temperature it was sampled at; greedy ones are scored at T = 1
    out.proposals[TaskType.DEDUCTION][0].gen.temperature = 0.6
    out.answers[TaskType.DEDUCTION][0].gen.temperature = 0.0
    data = reward_batch(out)
    batch = RewardBatch.model_validate({**data, "run_id": str(data["run_id"])})
    assert batch.batch_id == "7:2"
    assert batch.groups() == {"deduction/propose": 4, "deduction/solve": 3}
    assert all(s.weight_version == 3 for s in batch.samples)
    assert [s.temperature for s in batch.samples] == [0.6, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    rewards = sorted(s.reward for s in batch.samples if s.role == Role.PROPOSE)
    assert rewards == [-1.0, -1.0, 0.0, 0.75]


def test_group_metrics_count_by_hand() -> None:
    m = loop_metrics.step_metrics(_outcome())
    prop = m["groups"][group_key(TaskType.DEDUCTION, Role.PROPOSE)]
    assert prop["n"] == 4
    assert prop["valid_rate"] == pytest.approx(2 / 4)
    assert prop["format_error_rate"] == pytest.approx(1 / 4)
    assert prop["learnability"] == pytest.approx((0.75 + 0.0) / 2)
    assert prop["solve_rate"] == pytest.approx((0.25 + 1.0) / 2)
    assert prop["reward_mean"] == pytest.approx((0.75 - 1 - 1 + 0) / 4)
    assert prop["trivial_share"] == pytest.approx(1 / 2)
    assert prop["solved_share"] == pytest.approx(1 / 2)
    assert prop["determinism_rejections"] == pytest.approx(1 / 4)
    assert prop["tokens"] == 16 and prop["staleness"] == 1
    solve = m["groups"][group_key(TaskType.DEDUCTION, Role.SOLVE)]
    assert solve["solve_rate"] == pytest.approx(1 / 3)
    assert solve["format_error_rate"] == pytest.approx(1 / 3)
    assert m["tokens_generated"] == 16 + 6
    assert m["tokens_per_s"] == pytest.approx(22 / 4.0)
    assert "signals" in m and isinstance(m["flags"], list)
    empty = m["groups"][group_key(TaskType.INDUCTION, Role.SOLVE)]
    assert empty["n"] == 0 and empty["solve_rate"] == 0.0


def test_raw_samples_keep_the_first_responses_of_each_group_with_their_scores() -> None:
    out = _outcome()
    out.proposals[TaskType.DEDUCTION][0].gen.answer_closed = True
    rows = loop_metrics.raw_samples(out, per_group=2)
    by_group = [r["group"] for r in rows]
    assert by_group == ["deduction/propose"] * 2 + ["deduction/solve"] * 2
    first, second = rows[0], rows[1]
    assert first["text"] == out.proposals[TaskType.DEDUCTION][0].gen.text
    assert first["answer_closed"] and first["reward"] == pytest.approx(0.75)
    assert second["error"] == "no code" and second["reward"] == -1.0
    assert [r["reward"] for r in rows[2:]] == [1.0, -0.5]
    assert loop_metrics.raw_samples(out, per_group=0) == []
    prop = loop_metrics.step_metrics(out)["groups"]["deduction/propose"]
    assert prop["answer_closed_rate"] == pytest.approx(1 / 4)


def test_solver_metrics_count_answers_that_copy_the_input_and_tasks_where_that_is_right() -> None:
    out = _outcome()
    echo_task = _task("def f(xs):\n    return sorted(xs)", "[1, 2]", "[1, 2]")
    out.answers[TaskType.DEDUCTION] += [
        ScoredAnswer(_agen(TaskType.DEDUCTION, "[1,2]"), echo_task, 2, correct=True),
        ScoredAnswer(_agen(TaskType.DEDUCTION, "3"), _task(), 1),  # the input of f(x) = 2x
    ]
    solve = loop_metrics.step_metrics(out)["groups"]["deduction/solve"]
    assert solve["echo_answer_share"] == pytest.approx(2 / 5)
    assert solve["echo_task_share"] == pytest.approx(1 / 5)


def test_journal_survives_reopening(tmp_path: Path) -> None:
    j = StepJournal(tmp_path, 5)
    assert j.last_done() == -1 and j.pending(1) is None
    j.write_meta({"base_version": 4})
    j.mark_done(0)
    j.write_pending(1, {"batch": {"batch_id": "5:1"}})
    again = StepJournal(tmp_path, 5)
    assert again.meta() == {"base_version": 4}
    assert again.last_done() == 0
    assert again.pending(1) == {"batch": {"batch_id": "5:1"}}
    again.mark_done(1)
    assert again.pending(1) is None and again.last_done() == 1
    assert not list((tmp_path / "runs" / "5" / "steps").glob(".*"))  # no temp files left


# ------------------------------------------------------------------ adapters over real services
@pytest.fixture
def store(tmp_path: Path) -> TaskStore:
    return TaskStore(f"sqlite:///{tmp_path / 'gw.db'}", migrate_schema=True)


@pytest.fixture
def settings(tmp_path: Path, redis_url: str) -> Settings:
    s = Settings(data_dir=tmp_path / "data", redis_url=redis_url)
    s.trainer.stream = f"test-stream-{tmp_path.name}"
    return s


class _NoGeneration:
    """Applying a journaled step must not generate anything: every call here is a failure."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"replay called {name}")


def test_replayed_step_writes_nothing_twice(store: TaskStore, settings: Settings) -> None:
    client = redis.Redis.from_url(str(settings.redis_url))
    run_id = store.create_run("replay", {})
    trainer = RedisTrainer(client, settings)
    buffers = StoreBuffers(store, run_id)
    ports = LoopPorts(
        _NoGeneration(), _NoGeneration(), buffers, trainer, StoreHistory(store, run_id)
    )  # type: ignore[arg-type]
    journal = StepJournal(settings.data_dir, run_id)
    cfg = LoopSettings(batch_size=2, steps=1, seed_tasks_per_type=0)
    orch = Orchestrator(run_id, cfg, ports, journal)
    orch.base_version = 3
    orch.seed()
    seeded = {tt: len(buffers.snapshot(tt)) for tt in TaskType}
    assert seeded == {TaskType.DEDUCTION: 1, TaskType.ABDUCTION: 1, TaskType.INDUCTION: 1}

    out = _outcome()
    out.run_id = run_id
    payload = orch.payload(out)
    assert "hparams" not in payload["batch"]  # the trainer's own settings
    orch.cfg = LoopSettings(batch_size=2, steps=1, lr=3e-5)
    assert orch.payload(out)["batch"]["hparams"] == {"lr": 3e-5}
    assert RewardBatch.model_validate(
        {**orch.payload(out)["batch"], "run_id": "r"}
    ).hparams == TrainHparams(lr=3e-5)
    # only the valid, new proposals become tasks; the identity one duplicates nothing yet
    assert len(payload["new_tasks"]) == 2
    journal.write_pending(2, payload)
    orch.apply(2, payload)
    # a crash between the effects and the "done" marker: the restarted runner applies again
    (journal.steps / "000002.done").unlink()
    assert journal.pending(2) is not None
    orch.apply(2, journal.pending(2) or {})

    ded = buffers.snapshot(TaskType.DEDUCTION)
    assert len(ded) == 3 and sorted(s.step for s in ded) == [0, 2, 2]
    entries = client.xrange(settings.trainer.stream)
    assert [e[1][b"batch_id"] for e in entries] == [f"{run_id}:2".encode()]
    steps, groups = store.steps(run_id)
    assert [s.step for s in steps] == [2] and len(groups) == 6
    assert store.get_run(run_id).current_step == 2  # type: ignore[union-attr]
    rows, _ = store.list_tasks(TaskFilter(run_id=run_id, step_min=2))
    rec = next(r for r in rows if "* 2" in r.program)
    assert rec.solve_rate == pytest.approx(0.25) and rec.proposer_weight_version == 3


def test_trainer_versions_from_announcement_or_disk(settings: Settings) -> None:
    client = redis.Redis.from_url(str(settings.redis_url))
    settings.trainer.latest_key = f"latest-{settings.trainer.stream}"
    trainer = RedisTrainer(client, settings)
    assert trainer.latest_version() == (0, None)
    client.set(settings.trainer.latest_key, '{"version": 4, "path": "/x/v000004"}')
    assert trainer.latest_version() == (4, "/x/v000004")
    client.delete(settings.trainer.latest_key)


def test_known_fingerprints_see_formatting_variants(store: TaskStore) -> None:
    from azr.core.dedup import task_fingerprint

    run_id = store.create_run("fp", {})
    buffers = StoreBuffers(store, run_id)
    buffers.seed([IDENTITY_SEED])
    variant = task_fingerprint(
        TaskType.DEDUCTION, "def f(a):  # same\n    return a", ["'Hello world'"]
    )
    other = task_fingerprint(TaskType.DEDUCTION, "def f(a):\n    return a + 1", ["1"])
    assert buffers.known_fingerprints(TaskType.DEDUCTION, [variant, other]) == {variant}
