"""Crash safety with real processes: kill -9 of the gateway mid-step (twice: while a step is
being generated, and between a step's journal entry and its effects) and of an executor Celery
worker in the middle of a validation batch."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from azr.core.dedup import task_fingerprint
from azr.settings import Settings
from tests.gateway.loop_stack import (
    SMALL_RUN,
    assert_trained_once,
    get,
    running_stack,
    start_run,
    wait_for_status,
)

pytestmark = pytest.mark.slow


def _wait(predicate: Any, timeout_s: float, what: str, poll_s: float = 0.01) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll_s)
    raise AssertionError(f"timed out waiting for {what}")


def test_gateway_kill9_mid_step_resumes_without_loss_or_duplicates(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # hold each step 2 s between its journal entry and its effects: the window to kill in
    monkeypatch.setenv("AZR_FAULT_PAUSE_AFTER_JOURNAL_S", "2")
    steps = 3
    with running_stack(tmp_path, tiny_model_dir) as sup:
        gw = sup.gateway_url
        run_id = start_run(gw, {**SMALL_RUN, "steps": steps})
        journal = tmp_path / "data" / "runs" / str(run_id) / "steps"
        gateway = sup.children["gateway"]

        def kill_gateway() -> None:
            assert gateway.proc is not None
            os.kill(gateway.proc.pid, signal.SIGKILL)

        # 1) while step 1 is being generated: seeding done, step 1 not yet journaled
        _wait(lambda: (journal / "000000.done").exists(), 300, "seeding")
        time.sleep(1.0)
        assert not (journal / "000001.json").exists()
        kill_gateway()
        # 2) step 2 journaled but its effects not applied yet
        _wait(
            lambda: (journal / "000002.json").exists() and not (journal / "000002.done").exists(),
            600,
            "step 2's journal entry",
        )
        kill_gateway()

        final = wait_for_status(gw, run_id, ("finished", "failed", "stopped"), timeout_s=900)
        assert final["status"] == "finished", final["error"]
        assert sup.restarts("gateway") == 2

        # every step recorded once, every batch published once and trained once
        metrics = get(gw, f"/v1/runs/{run_id}/metrics")
        assert [s["step"] for s in metrics["steps"]] == list(range(1, steps + 1))
        settings = Settings(data_dir=tmp_path / "data")
        assert_trained_once(sup, settings.trainer.stream, steps)
        import redis

        r = redis.Redis.from_url(sup.redis_url)
        versions = [
            int(r.hget(settings.trainer.batch_versions_key, f"{run_id}:{s}") or -1)
            for s in range(1, steps + 1)
        ]
        assert versions == sorted(set(versions)) and min(versions) > 0

        # no accepted task lost: every task a journaled step accepted is in the buffers, once
        tasks = get(gw, "/v1/tasks", run_id=run_id, limit=500)["items"]
        stored = [(t["task_type"], t["fingerprint"]) for t in tasks]
        assert len(stored) == len(set(stored))
        for step in range(1, steps + 1):
            payload = json.loads((journal / f"{step:06d}.json").read_text())
            for new in payload["new_tasks"]:
                t = new["task"]
                fp = task_fingerprint(t["task_type"], t["program"], t["inputs"])
                assert (t["task_type"], fp) in stored
            # the batch on the stream is the journaled one (not a regenerated step)
            assert payload["batch"]["batch_id"] == f"{run_id}:{step}"


CPU_PROGRAM = "def f(n):\n    s = 0\n    for i in range(n):\n        s += i * i\n    return s"


def _pool_workers(executor_pid: int) -> list[psutil.Process]:
    """The Celery prefork pool children (the worker's main process is their parent)."""
    root = psutil.Process(executor_pid)
    mains = [p for p in root.children() if "celery" in " ".join(p.cmdline())]
    return [c for m in mains for c in m.children() if "celery" in " ".join(c.cmdline())]


def test_executor_worker_kill9_mid_batch_completes(tiny_model_dir: Path, tmp_path: Path) -> None:
    with running_stack(tmp_path, tiny_model_dir) as sup:
        executor = sup.children["executor"]
        assert executor.proc is not None
        _wait(lambda: len(_pool_workers(executor.proc.pid)) >= 2, 60, "pool workers", 0.2)
        n_items = 24
        items = [
            {"task_type": "deduction", "program": CPU_PROGRAM, "inputs": [str(300_000 + i)]}
            for i in range(n_items)
        ]
        result: dict[str, Any] = {}

        def call() -> None:
            resp = httpx.post(
                f"{executor.url}/v1/validate",
                json={"items": items},
                headers={"Authorization": f"Bearer {sup.service_token}"},
                timeout=300,
            )
            result["status"] = resp.status_code
            result["body"] = resp.json()

        t = threading.Thread(target=call)
        t.start()
        time.sleep(1.0)  # the batch is being worked on
        victim = _pool_workers(executor.proc.pid)[0]
        victim.kill()
        t.join(300)
        assert not t.is_alive()
        assert result["status"] == 200, result
        results = result["body"]["results"]
        assert len(results) == n_items
        for i, r in enumerate(results):
            n = 300_000 + i
            assert r["valid"], r
            assert r["outputs"] == [repr(sum(k * k for k in range(n)))]
