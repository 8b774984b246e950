"""The runner (the API's RunControl) with a real database and Redis: a run whose inference
service is unreachable fails with a readable error instead of hanging; a stopped run's thread
ends; a run still marked running is picked up by `recover` (what a restarted gateway does)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import redis

from azr.loop.orchestrator import LoopPorts
from azr.settings import LoopSettings, Settings
from services.gateway.control import InvalidTransition
from services.gateway.loop.adapters import (
    HttpExecutor,
    HttpInference,
    RedisTrainer,
    StoreBuffers,
    StoreHistory,
)
from services.gateway.runner import LoopRunner, load_seed_file
from services.gateway.store import TaskStore


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # closed again: nothing listens


@pytest.fixture
def runner(tmp_path: Path, redis_url: str) -> LoopRunner:
    settings = Settings(data_dir=tmp_path, redis_url=redis_url)
    settings.trainer.latest_key = f"latest-{tmp_path.name}"
    store = TaskStore(f"sqlite:///{tmp_path / 'gw.db'}", migrate_schema=True)
    client = redis.Redis.from_url(redis_url)
    dead = _dead_url()
    inference = HttpInference(dead, dead, "t", timeout_s=5)
    executor = HttpExecutor(dead, timeout_s=5)

    def ports(run_id: int, cfg: LoopSettings) -> LoopPorts:
        return LoopPorts(
            inference,
            executor,
            StoreBuffers(store, run_id),
            RedisTrainer(client, settings),
            StoreHistory(store, run_id),
        )

    return LoopRunner(settings, store, ports, inference=inference, executor=executor)


def test_unreachable_inference_fails_the_run_with_its_reason(runner: LoopRunner) -> None:
    run_id = runner.store.create_run("dead", {"steps": 1, "batch_size": 1})
    runner.start(run_id)
    runner.store.set_run_status(run_id, "running")  # what the API writes after start()
    assert runner.wait(run_id, 60)
    run = runner.store.get_run(run_id)
    assert run is not None and run.status == "failed"
    assert run.error and "ConnectError" in run.error
    # seeding happened before the failure and is not repeated on resume
    assert sum(len(StoreBuffers(runner.store, run_id).snapshot(t)) for t in _types()) == 3


def test_recover_resumes_only_runs_left_running(runner: LoopRunner) -> None:
    left = runner.store.create_run("left running", {"steps": 1})
    runner.store.set_run_status(left, "running")  # as a killed gateway leaves it
    paused = runner.store.create_run("paused", {"steps": 1})
    runner.store.set_run_status(paused, "paused")
    assert runner.recover() == [left]
    assert runner.wait(left, 60)
    assert runner.store.get_run(left).status == "failed"  # type: ignore[union-attr]
    assert runner.recover() == []  # a failed run waits for an explicit resume
    assert paused not in runner.runs


def test_pause_without_a_thread_is_refused(runner: LoopRunner) -> None:
    run_id = runner.store.create_run("idle", {"steps": 1})
    with pytest.raises(InvalidTransition):
        runner.pause(run_id)


def test_seed_file_rejects_malformed_lines(tmp_path: Path) -> None:
    good = tmp_path / "seeds.jsonl"
    good.write_text('{"program": "def f(x):\\n    return x", "input": "1"}\n\n')
    (task,) = load_seed_file(good)
    assert task.inputs == ("1",) and task.task_type.value == "deduction"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task_type": "deduction"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:1"):
        load_seed_file(bad)


def _types() -> list:
    from azr.core.tasks import TaskType

    return list(TaskType)
