"""The gateway's database layer and TaskStore, against SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from azr.core.tasks import IDENTITY_INDUCTION_SEED, IDENTITY_SEED, Task, TaskType
from services.gateway.db import Base, migrate
from services.gateway.store import TaskFilter, TaskStore
from tests.gateway.gw_fixtures import db_engine_fixture, store_fixture  # noqa: F401


def ded(program: str, inp: str = "1", out: str = "1") -> Task:
    return Task(TaskType.DEDUCTION, program, (inp,), (out,))


def test_migration_matches_models_and_is_idempotent(db_engine: sa.Engine) -> None:
    migrate(db_engine)
    migrate(db_engine)  # a restart migrates again: nothing to do, no error
    tables = set(sa.inspect(db_engine).get_table_names())
    assert {"runs", "steps", "step_metrics", "tasks", "weight_versions"} <= tables
    with db_engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    # Type-only differences (JSON vs JSON variants) are not reported by default; anything else is
    # a model/migration mismatch.
    assert diff == []


def test_seed_fills_buffers_once(store: TaskStore) -> None:
    run = store.create_run("r", {})
    assert store.seed(run) == 3  # identity into deduction AND abduction, induction seed
    assert store.seed(run) == 0  # replayed after a crash: nothing new
    ded_buf = store.buffer(run, "deduction")
    abd_buf = store.buffer(run, TaskType.ABDUCTION)
    ind_buf = store.buffer(run, "induction")
    assert [t.program for _, t in ded_buf] == [IDENTITY_SEED.program]
    assert [t.task_type for _, t in abd_buf] == [TaskType.ABDUCTION]
    assert abd_buf[0][1].outputs == IDENTITY_SEED.outputs
    assert ind_buf[0][1].inputs == IDENTITY_INDUCTION_SEED.inputs
    assert ind_buf[0][1].message == IDENTITY_INDUCTION_SEED.message
    rec = store.get_task(ded_buf[0][0])
    assert rec is not None and rec.source == "seed" and rec.status == "seed" and rec.step == 0


def test_add_task_dedups_by_normalised_fingerprint_and_keeps_lineage(store: TaskStore) -> None:
    run = store.create_run("r", {})
    prog = "def f(x):\n    return x * 2"
    tid, dup = store.add_task(
        run, ded(prog, "3", "6"), step=4, proposer_version=7, validation={"valid": True}
    )
    assert tid is not None and not dup
    # Same program with a comment and other spacing, same input: a duplicate.
    again = "def f(x):\n    # double it\n    return x*2\n"
    tid2, dup2 = store.add_task(
        run, ded(again, "3", "6"), step=5, proposer_version=8, validation={}
    )
    assert (tid2, dup2) == (tid, True)
    # Another input is another task; the same triplet in another run or buffer is not a duplicate.
    assert (
        store.add_task(run, ded(prog, "4", "8"), step=5, proposer_version=8, validation={})[1]
        is False
    )
    other = store.create_run("other", {})
    assert (
        store.add_task(other, ded(prog, "3", "6"), step=1, proposer_version=1, validation={})[1]
        is False
    )
    abd = Task(TaskType.ABDUCTION, prog, ("3",), ("6",))
    assert store.add_task(run, abd, step=1, proposer_version=1, validation={})[1] is False
    rec = store.get_task(tid)
    assert rec is not None
    assert (rec.step, rec.proposer_weight_version, rec.source, rec.status) == (
        4,
        7,
        "proposed",
        "active",
    )
    assert rec.validation == {"valid": True}
    assert rec.outputs == ["6"]


def test_concurrent_duplicates_store_one_row(store: TaskStore) -> None:
    run = store.create_run("r", {})
    results: list[tuple[int | None, bool]] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        results.append(
            store.add_task(
                run,
                ded("def f(a):\n    return [a]", "1", "[1]"),
                step=1,
                proposer_version=0,
                validation={},
            )
        )

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = {tid for tid, _ in results}
    assert len(ids) == 1 and sum(not dup for _, dup in results) == 1
    assert len(store.buffer(run, "deduction")) == 1


def test_cap_evicts_most_common_family_then_oldest_never_seeds(store: TaskStore) -> None:
    run = store.create_run("capped", {"buffer_cap": 4})
    store.seed(run)  # one seed in the deduction buffer
    fam = "def f(x):\n    return x + 1"
    a = store.add_task(run, ded(fam, "1", "2"), step=1, proposer_version=0, validation={})[0]
    b = store.add_task(run, ded(fam, "2", "3"), step=2, proposer_version=0, validation={})[0]
    c = store.add_task(
        run, ded("def f(x):\n    return -x", "1", "-1"), step=1, proposer_version=0, validation={}
    )[0]
    assert len(store.buffer(run, "deduction")) == 4  # at the cap: nothing evicted yet
    # A fifth task: the family of `fam` (2 members) is the least diverse -> its oldest goes,
    # although `c` is as old.
    d = store.add_task(
        run, ded("def f(x):\n    return x * x", "3", "9"), step=3, proposer_version=0, validation={}
    )[0]
    ids = [i for i, _ in store.buffer(run, "deduction")]
    assert a not in ids and {b, c, d} <= set(ids)
    evicted = store.get_task(a)
    assert evicted is not None and evicted.status == "evicted"
    # Now all proposed families are singletons: the oldest step goes (c, step 1), never the seed.
    e = store.add_task(
        run,
        ded("def f(x):\n    return str(x)", "3", "'3'"),
        step=4,
        proposer_version=0,
        validation={},
    )[0]
    ids = [i for i, _ in store.buffer(run, "deduction")]
    assert c not in ids and {b, d, e} <= set(ids)
    assert any(t.program == IDENTITY_SEED.program for _, t in store.buffer(run, "deduction"))
    assert len(ids) == 4
    # An evicted task re-proposed is still a duplicate (the buffer does not churn on it).
    assert store.add_task(run, ded(fam, "1", "2"), step=5, proposer_version=0, validation={}) == (
        a,
        True,
    )


def test_buffer_quarantine_and_solve_rate(store: TaskStore) -> None:
    run = store.create_run("r", {})
    ids = [
        store.add_task(
            run,
            ded(f"def f(x):\n    return x + {i}", "0", str(i)),
            step=i,
            proposer_version=i,
            validation={},
        )[0]
        for i in range(1, 5)
    ]
    store.quarantine(ids[3], "looks like reward hacking")
    assert ids[3] not in [i for i, _ in store.buffer(run, "deduction")]
    assert ids[3] in [i for i, _ in store.buffer(run, "deduction", statuses=("quarantined",))]
    rec = store.get_task(ids[3])
    assert rec is not None and rec.status_reason == "looks like reward hacking"
    store.record_solve_rate(ids[0], 0.25, 8)
    store.record_solve_rate(ids[0], 0.25, 8)  # replay: same values
    rec = store.get_task(ids[0])
    assert rec is not None and (rec.solve_rate, rec.n_solves) == (0.25, 8)
    assert store.buffer_sizes(run)["deduction"] == {"active": 3, "quarantined": 1}


def test_list_filters_text_search_and_chunked_iteration(store: TaskStore) -> None:
    run = store.create_run("r", {})
    for i in range(7):
        store.add_task(
            run,
            ded(f"def f(x):\n    return x % {i + 1}  # mod_{i}", "5", "0"),
            step=i,
            proposer_version=0,
            validation={},
        )
    ind = Task(
        TaskType.INDUCTION,
        "def f(x):\n    return x",
        ("1", "2"),
        ("1", "2"),
        message="100% identity",
    )
    store.add_task(run, ind, step=2, proposer_version=0, validation={})
    rows, total = store.list_tasks(TaskFilter(run_id=run, step_min=2, step_max=4), limit=2)
    assert total == 4 and [r.step for r in rows] == [2, 4]  # newest id first, page of 2
    rows, total = store.list_tasks(TaskFilter(run_id=run, text="mod_3"))
    assert total == 1 and "mod_3" in rows[0].program
    # LIKE wildcards in the search text are literal characters.
    assert store.list_tasks(TaskFilter(text="100%"))[1] == 1
    assert store.list_tasks(TaskFilter(text="_"))[1] == 7
    assert store.list_tasks(TaskFilter(task_type="induction"))[1] == 1
    everything = list(store.iter_tasks(TaskFilter(run_id=run), chunk=3))
    assert len(everything) == 8 and [r.id for r in everything] == sorted(r.id for r in everything)


def test_record_step_upserts(store: TaskStore) -> None:
    run = store.create_run("r", {"batch_size": 2})
    groups = {
        "deduction/propose": {
            "valid_rate": 0.5,
            "reward_mean": 0.1,
            "tokens": 10,
            "trivial_share": 0.0,
        }
    }
    store.record_step(run, 1, {"timings": {"propose": 1.5}, "tasks": 3}, groups)
    groups["deduction/propose"]["valid_rate"] = 0.75
    store.record_step(run, 1, {"timings": {"propose": 2.0}, "tasks": 3}, groups)  # replay
    store.record_step(run, 2, {}, {"abduction/solve": {"solve_rate": 1.0}})
    steps, rows = store.steps(run)
    assert [s.step for s in steps] == [1, 2]
    assert steps[0].timings == {"propose": 2.0}
    assert [(r.step, r.task_type, r.role) for r in rows] == [
        (1, "deduction", "propose"),
        (2, "abduction", "solve"),
    ]
    assert rows[0].valid_rate == 0.75 and rows[0].tokens == 10
    assert rows[0].extra == {"trivial_share": 0.0}
    assert store.steps(run, step_min=2)[0][0].step == 2
    store.set_current_step(run, 2)
    store.set_run_status(run, "running")
    got = store.get_run(run)
    assert got is not None and (got.current_step, got.status) == (2, "running")
    assert got.settings == {"batch_size": 2}


def test_weight_versions(store: TaskStore) -> None:
    run = store.create_run("r", {})
    assert store.current_weights() is None
    store.record_weight_version(1, "ckpt/v000001", "abc", run_id=run, batch_id=f"{run}:1")
    store.record_weight_version(2, "ckpt/v000002", "def", run_id=run, batch_id=f"{run}:2")
    store.record_weight_version(2, "ckpt/v000002", "def")  # replay keeps run and batch
    assert store.current_weights() is None
    latest = store.latest_weights()
    assert latest is not None and latest.version == 2 and latest.batch_id == f"{run}:2"
    store.mark_loaded(2)
    store.mark_loaded(1)  # rolled back to v1: the current one is the last loaded
    current = store.current_weights()
    assert current is not None and current.version == 1 and current.loaded_at is not None
    rows, total = store.weight_history(run_id=run)
    assert total == 2 and [r.version for r in rows] == [2, 1]
