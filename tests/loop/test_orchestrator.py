"""The transport-free loop driven by scripted in-memory ports: the valid-proposal path, the
staleness arithmetic, induction's reference program, and replay of a journaled step after a
crash. No HTTP, Redis or model: each test runs in well under a second."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from azr.contracts.trainer import RewardBatch
from azr.core.tasks import Role, Task, TaskType
from azr.loop.journal import StepJournal
from azr.loop.orchestrator import LoopPorts, Orchestrator, WeightsTimeout
from azr.settings import LoopSettings

from .scripted import (
    MemoryBuffers,
    MemoryHistory,
    MemoryTrainer,
    ScriptedExecutor,
    ScriptedInference,
)

DOUBLE = "def f(x):\n    return x * 2"


def _cfg(**over: Any) -> LoopSettings:
    base: dict[str, Any] = {
        "steps": 1,
        "task_types": ["deduction"],
        "batch_size": 1,
        "n_rollouts": 4,
        "k_references": 1,
        "seed_tasks_per_type": 0,
        "heldout_tasks_per_type": 0,
    }
    base.update(over)
    return LoopSettings(**base)


def _orch(
    tmp_path: Path,
    cfg: LoopSettings,
    inference: ScriptedInference,
    trainer: MemoryTrainer | None = None,
    buffers: MemoryBuffers | None = None,
    executor: ScriptedExecutor | None = None,
    history: MemoryHistory | None = None,
    **kw: Any,
) -> tuple[Orchestrator, LoopPorts]:
    ports = LoopPorts(
        inference=inference,
        executor=executor or ScriptedExecutor(),
        buffers=buffers or MemoryBuffers(),
        trainer=trainer or MemoryTrainer(),
        history=history or MemoryHistory(),
    )
    return Orchestrator(1, cfg, ports, StepJournal(tmp_path, 1), poll_s=0.01, **kw), ports


def _samples(batch: dict[str, Any], role: Role) -> list[dict[str, Any]]:
    return [s for s in batch["samples"] if s["role"] == role.value]


def test_valid_proposal_is_validated_rewarded_and_buffered(tmp_path: Path) -> None:
    # the solver gets 1 of the 4 learnability rollouts right: solve rate 1/4
    inference = ScriptedInference(
        {TaskType.DEDUCTION: [DOUBLE]},
        solver=lambda task, i: task.outputs[0] if i == 0 else "-1",
    )
    orch, ports = _orch(tmp_path, _cfg(), inference)
    orch.run()
    trainer, buffers = ports.trainer, ports.buffers
    assert isinstance(trainer, MemoryTrainer) and isinstance(buffers, MemoryBuffers)
    # the executor's output became the task's gold output, and the task entered the buffer
    [new] = buffers.added
    assert new.task.program == DOUBLE and new.task.outputs == ("6",)
    assert new.solve_rate == pytest.approx(0.25)
    # the batch is a valid trainer contract; the proposer is rewarded 1 - solve rate
    [batch] = trainer.batches
    RewardBatch.model_validate({**batch, "run_id": str(batch["run_id"])})
    [propose] = _samples(batch, Role.PROPOSE)
    assert propose["reward"] == pytest.approx(0.75)
    assert _samples(batch, Role.SOLVE), "the solver batch comes from the seeded buffer"


def test_two_stage_proposal_trains_both_sequences_with_one_reward(tmp_path: Path) -> None:
    inference = ScriptedInference(
        {TaskType.DEDUCTION: [DOUBLE]},
        solver=lambda task, i: task.outputs[0] if i == 0 else "-1",
        two_stage=True,
    )
    orch, ports = _orch(tmp_path, _cfg(temperature=0.7), inference)
    orch.run()
    trainer = ports.trainer
    assert isinstance(trainer, MemoryTrainer)
    [batch] = trainer.batches
    RewardBatch.model_validate({**batch, "run_id": str(batch["run_id"])})
    program, call = _samples(batch, Role.PROPOSE)
    # the second stage is its own sequence (its own prompt and tokens), rewarded like the first
    assert program["completion_token_ids"] == [4, 5] and call["completion_token_ids"] == [6, 7]
    assert call["prompt_token_ids"] == [1, 2, 3, 4, 5, 9]
    assert program["reward"] == call["reward"] == pytest.approx(0.75)
    assert call["temperature"] == pytest.approx(0.7)
    # learnability rollouts and the solver's answers are sampled at the run's temperature
    assert inference.solve_temperatures == [0.7, 0.7]
    # the journal's raw samples keep the second stage's text too
    kept = StepJournal(tmp_path, 1).load(1)
    assert kept is not None
    [raw] = [r for r in kept["samples"] if r["group"] == "deduction/propose"]
    assert raw["continuation"] == "3)"


def test_learnability_temperature_can_be_set_apart(tmp_path: Path) -> None:
    inference = ScriptedInference({TaskType.DEDUCTION: [DOUBLE]})
    cfg = _cfg(temperature=0.7, learnability_temperature=1.0)
    orch, _ = _orch(tmp_path, cfg, inference)
    orch.run()
    assert inference.solve_temperatures == [1.0, 0.7]


def test_the_solver_can_sample_at_its_own_temperature(tmp_path: Path) -> None:
    """`solver_temperature`: answers and (by default) learnability rollouts at the solver's
    temperature, proposals at the run's; the answers carry it to the trainer."""
    inference = ScriptedInference({TaskType.DEDUCTION: [DOUBLE]})
    orch, ports = _orch(tmp_path, _cfg(temperature=0.7, solver_temperature=1.2), inference)
    orch.run()
    assert inference.solve_temperatures == [1.2, 1.2]
    trainer = ports.trainer
    assert isinstance(trainer, MemoryTrainer)
    [batch] = trainer.batches
    assert {s["temperature"] for s in _samples(batch, Role.PROPOSE)} == {0.7}
    assert {s["temperature"] for s in _samples(batch, Role.SOLVE)} == {1.2}
    cfg = _cfg(temperature=0.7, solver_temperature=1.2, learnability_temperature=1.0)
    apart = ScriptedInference({TaskType.DEDUCTION: [DOUBLE]})
    _orch(tmp_path / "apart", cfg, apart)[0].run()
    assert apart.solve_temperatures == [1.0, 1.2]


@pytest.mark.parametrize(
    ("scheme", "rewards"), [("format_aware", {1.0, -0.5, -1.0}), ("binary", {1.0, 0.0})]
)
def test_the_solver_reward_scheme_reaches_the_batch(
    tmp_path: Path, scheme: str, rewards: set[float]
) -> None:
    """Right, wrong and unparseable answers: graded by format (the reference) or 1 / 0."""

    def solver(task: Task, i: int) -> str | None:
        return [task.outputs[0], "-1", None][i % 3]

    inference = ScriptedInference({TaskType.DEDUCTION: [DOUBLE]}, solver=solver)
    cfg = _cfg(solver_reward=scheme, solver_samples=3)
    orch, ports = _orch(tmp_path, cfg, inference)
    orch.run()
    trainer = ports.trainer
    assert isinstance(trainer, MemoryTrainer)
    [batch] = trainer.batches
    assert {s["reward"] for s in _samples(batch, Role.SOLVE)} == rewards


def test_invalid_and_duplicate_proposals_do_not_enter_the_buffer(tmp_path: Path) -> None:
    inference = ScriptedInference(
        {TaskType.DEDUCTION: ["def f(x):\n    return 1 / 0", DOUBLE, DOUBLE]},
    )
    orch, ports = _orch(tmp_path, _cfg(steps=3), inference)
    orch.run()
    buffers = ports.buffers
    assert isinstance(buffers, MemoryBuffers)
    assert [n.task.program for n in buffers.added] == [DOUBLE]
    trainer = ports.trainer
    assert isinstance(trainer, MemoryTrainer)
    first = _samples(trainer.batches[0], Role.PROPOSE)[0]
    assert first["reward"] < 0, "a program that raises is penalised"


def test_sync_mode_serves_each_new_version_before_the_next_step(tmp_path: Path) -> None:
    inference = ScriptedInference({TaskType.DEDUCTION: [DOUBLE] * 3})
    history = MemoryHistory()
    orch, _ = _orch(tmp_path, _cfg(steps=3, mode="sync"), inference, history=history)
    orch.run()
    # step t is generated by the weights trained on step t-1: versions 0, 1, 2; then 3 served
    assert [history.steps[s]["weight_version"] for s in (1, 2, 3)] == [0, 1, 2]
    assert [history.steps[s]["staleness"] for s in (1, 2, 3)] == [0, 0, 0]
    assert inference.loads == [1, 2, 3]


def test_async_staleness_bound_waits_then_fails_with_the_versions(tmp_path: Path) -> None:
    # a trainer that never finishes an update: async lets max_staleness steps run ahead
    inference = ScriptedInference({TaskType.DEDUCTION: [DOUBLE] * 4})
    trainer = MemoryTrainer(auto=False)
    history = MemoryHistory()
    cfg = _cfg(steps=4, mode="async", max_staleness=1)
    orch, _ = _orch(
        tmp_path, cfg, inference, trainer=trainer, history=history, weights_timeout_s=0.2
    )
    with pytest.raises(WeightsTimeout, match="needs weights version 1; the trainer is at 0"):
        orch.run()
    # step 1 at staleness 0, step 2 one version behind, step 3 would be two: refused
    assert sorted(history.steps) == [1, 2]
    assert history.steps[2]["staleness"] == 1
    assert len(trainer.batches) == 2


def test_induction_takes_the_reference_program(tmp_path: Path) -> None:
    # the induction proposer writes inputs and a message only; the program is the reference's
    inference = ScriptedInference({TaskType.INDUCTION: [None]}, inputs=["1", "2", "5"])
    executor = ScriptedExecutor()
    buffers = MemoryBuffers()
    ref = Task(TaskType.DEDUCTION, DOUBLE, ("3",), ("6",))
    buffers.tasks[TaskType.DEDUCTION].append(buffers_stored(ref))
    cfg = _cfg(task_types=["induction"])
    orch, _ = _orch(tmp_path, cfg, inference, buffers=buffers, executor=executor)
    orch.run()
    assert [refs[0].program for refs in inference.proposed_refs] == [DOUBLE]
    induction = [i for i in executor.validated if i[0] is TaskType.INDUCTION]
    assert induction == [(TaskType.INDUCTION, DOUBLE, ["1", "2", "5"], "double it")]
    [new] = [n for n in buffers.added if n.task.task_type is TaskType.INDUCTION]
    assert new.task.outputs == ("2", "4", "10")


def buffers_stored(task: Task) -> Any:
    from azr.loop.ports import StoredTask

    return StoredTask(99, task, 0)


def test_replay_after_a_crash_publishes_the_journaled_step_once(tmp_path: Path) -> None:
    inference = ScriptedInference({TaskType.DEDUCTION: [DOUBLE]})
    # the stream is down when step 1 is applied: the run crashes after journaling the step
    trainer = MemoryTrainer(fail_publishes=1)
    buffers = MemoryBuffers()
    orch, _ = _orch(tmp_path, _cfg(steps=2), inference, trainer=trainer, buffers=buffers)
    with pytest.raises(ConnectionError):
        orch.run()
    assert inference.propose_calls == 1 and not trainer.batches
    journaled = StepJournal(tmp_path, 1).pending(1)
    assert journaled is not None
    # a new process resumes: step 1 is replayed from the journal, not generated again
    again = ScriptedInference({TaskType.DEDUCTION: [DOUBLE]})
    orch2, _ = _orch(tmp_path, _cfg(steps=2), again, trainer=trainer, buffers=buffers)
    orch2.run()
    assert [b["step"] for b in trainer.batches] == [1, 2]
    assert trainer.batches[0]["batch_id"] == journaled["batch"]["batch_id"]
    assert again.propose_calls == 1, "only step 2 was generated after the restart"
    assert [n.step for n in buffers.added] == [1]


def test_several_answers_per_task_are_all_scored_and_trained(tmp_path: Path) -> None:
    # 3 answers per solver-batch task: the first right, the others wrong
    inference = ScriptedInference(
        {TaskType.DEDUCTION: [DOUBLE]},
        solver=lambda task, i: task.outputs[0] if i == 0 else "-1",
    )
    cfg = _cfg(solver_samples=3, solver_baseline="task")
    orch, ports = _orch(tmp_path, cfg, inference)
    orch.run()
    trainer = ports.trainer
    assert isinstance(trainer, MemoryTrainer)
    [batch] = trainer.batches
    parsed = RewardBatch.model_validate({**batch, "run_id": str(batch["run_id"])})
    solves = _samples(batch, Role.SOLVE)
    assert len(solves) == 3 * cfg.batch_size
    assert sorted(s["reward"] for s in solves) == [-0.5, -0.5, 1.0]
    # the answers to one task name it, so the trainer can give them their own baseline
    assert len({s["task_id"] for s in solves}) == 1 and solves[0]["task_id"]
    assert parsed.hparams is not None and parsed.hparams.solver_baseline == "task"


def test_an_untrained_proposer_sends_only_the_solver_samples(tmp_path: Path) -> None:
    """`train_roles=["solve"]`: proposals are still made, validated and rewarded (the metrics
    show them), but the trainer gets the answers only; by default it gets both roles."""
    for roles in (["solve"], ["propose", "solve"]):
        inference = ScriptedInference({TaskType.DEDUCTION: [DOUBLE]})
        orch, ports = _orch(tmp_path / "-".join(roles), _cfg(train_roles=roles), inference)
        orch.run()
        trainer = ports.trainer
        assert isinstance(trainer, MemoryTrainer)
        [batch] = trainer.batches
        assert {s["role"] for s in batch["samples"]} == set(roles)
        assert len(_samples(batch, Role.SOLVE)) == _cfg().batch_size
        history = ports.history
        assert isinstance(history, MemoryHistory)
        assert history.steps[1]["groups"]["deduction/propose"]["n"] == 1


def test_the_proposal_batch_can_differ_from_the_solver_batch(tmp_path: Path) -> None:
    """`propose_batch_size` sets how many proposals a step makes; the solver's batch (and so
    the answers trained) stays `batch_size`. 0, the default, means the same as `batch_size`."""
    for propose, expected in ((3, 3), (0, 2)):
        inference = ScriptedInference({TaskType.DEDUCTION: [DOUBLE] * 4})
        cfg = _cfg(batch_size=2, propose_batch_size=propose, train_roles=["solve"])
        orch, ports = _orch(tmp_path / str(propose), cfg, inference)
        orch.run()
        assert len(inference.proposed_refs) == expected
        history = ports.history
        assert isinstance(history, MemoryHistory)
        assert history.steps[1]["groups"]["deduction/propose"]["n"] == expected
        trainer = ports.trainer
        assert isinstance(trainer, MemoryTrainer)
        [batch] = trainer.batches
        assert len(_samples(batch, Role.SOLVE)) == 2  # the solver's batch is batch_size


def test_solver_max_new_caps_the_newest_tasks_in_a_solver_batch(tmp_path: Path) -> None:
    """`solver_max_new` limits how many of last step's tasks open the solver's batch; the rest
    is drawn from the whole buffer (new ones included, so a new task can come back there). With
    4 new tasks among 44, the reference's mix (0: batch_size) trains on the 4 new ones only."""
    buffers = MemoryBuffers()
    for i in range(40):
        buffers.seed(
            [Task(TaskType.DEDUCTION, f"def f(x):\n    return x + {i}", ["1"], [str(i + 1)])]
        )
    new_ids = set()
    for i in range(4):
        task = Task(TaskType.DEDUCTION, f"def f(x):\n    return x * {i + 2}", ["1"], [str(i + 2)])
        buffers._insert(task, 1)
        new_ids.add(buffers.tasks[TaskType.DEDUCTION][-1].id)
    counts: dict[int, list[int]] = {0: [], 1: []}
    for max_new in counts:
        for seed in range(30):
            cfg = _cfg(batch_size=4, solver_max_new=max_new, seed=seed)
            orch, _ = _orch(
                tmp_path / f"{max_new}-{seed}", cfg, ScriptedInference({}), buffers=buffers
            )
            batch = orch.solver_batch(2, TaskType.DEDUCTION)
            assert len(batch) == 4
            counts[max_new].append(sum(t.id in new_ids for t in batch))
    assert counts[0] == [4] * 30
    assert all(c >= 1 for c in counts[1]) and sum(counts[1]) / 30 < 2


def test_solver_skip_echo_keeps_tasks_whose_output_is_their_input_out_of_training(
    tmp_path: Path,
) -> None:
    """Under `solver_skip_echo` neither a solver batch nor a proposer's references hold a task
    whose output equals its input (the input-echo shortcut of docs/results.md, runs 8 and 9);
    they stay in the buffer. Off (the reference), they are drawn like any other task. With only
    echo tasks in the buffer (the identity seed at the start) they are drawn anyway."""
    echo = [
        Task(
            TaskType.DEDUCTION,
            "def f(xs):\n    return sorted(xs)",
            [f"[{i}, {i + 1}]"],
            [f"[{i}, {i + 1}]"],
        )
        for i in range(6)
    ]
    other = [
        Task(TaskType.DEDUCTION, f"def f(x):\n    return x + {i}", ["1"], [str(i + 1)])
        for i in range(1, 7)
    ]
    buffers = MemoryBuffers()
    buffers.seed(echo + other)
    programs_drawn: dict[bool, set[str]] = {True: set(), False: set()}
    for skip in (True, False):
        for seed in range(10):
            cfg = _cfg(batch_size=6, k_references=4, solver_skip_echo=skip, seed=seed)
            orch, _ = _orch(
                tmp_path / f"{skip}-{seed}", cfg, ScriptedInference({}), buffers=buffers
            )
            batch = [s.task for s in orch.solver_batch(1, TaskType.DEDUCTION)]
            refs = [t for group in orch.references(1, TaskType.DEDUCTION) for t in group]
            assert len(batch) == 6
            programs_drawn[skip].update(t.inputs[0] for t in batch + refs if t in echo)
    assert programs_drawn[True] == set()
    assert len(programs_drawn[False]) >= 3

    only_echo = MemoryBuffers()
    only_echo.seed(echo[:2])
    cfg = _cfg(batch_size=3, solver_skip_echo=True)
    orch, _ = _orch(tmp_path / "only", cfg, ScriptedInference({}), buffers=only_echo)
    assert len(orch.solver_batch(1, TaskType.DEDUCTION)) == 3
