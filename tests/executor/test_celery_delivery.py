"""Chunk delivery through a real Redis broker and real Celery workers: the visibility timeout is
derived from the limits and a shorter one refuses to start (else a chunk running longer than it
is handed to a second worker and runs twice), and a revoke after a 504 stops a running chunk."""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis
from fastapi.testclient import TestClient

from azr.settings import ExecutorSettings, Settings
from services.executor.api import create_app
from services.executor.celery_app import (
    WORKERS_KEY,
    VisibilityTimeoutTooShort,
    chunk_budget_s,
    live_workers,
    make_celery,
)
from services.executor.main import start_worker, stop_worker

SLEEPER = "def f(s):\n    import time\n    time.sleep(s)\n    return s"
# worker and API share these limits: chunks of 2 items of at most 6 s each
LIMITS = {"AZR_EXECUTOR__TIMEOUT_S": "2", "AZR_EXECUTOR__MAX_TIMEOUT_S": "6"}
LIMITS["AZR_EXECUTOR__CHUNK_SIZE"] = "2"


def cfg(queue: str, **extra: float) -> ExecutorSettings:
    return ExecutorSettings(queue=queue, timeout_s=2, max_timeout_s=6, chunk_size=2, **extra)


def received(log: Path) -> list[str]:
    """Task ids in the order the worker log says they were received."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return re.findall(r"Task executor\.\w+\[([0-9a-f-]+)\] received", text)


def pool_pids(url: str, worker_pid: int) -> set[int]:
    """The registered pool processes of the worker `worker_pid`."""
    client = redis.Redis.from_url(url)
    pids = {int(entry["pid"]) for entry in live_workers(client).values()}
    children = {p.pid for p in psutil.Process(worker_pid).children()}
    return pids & children


def wait_pool(url: str, worker: subprocess.Popen[bytes], n: int, timeout_s: float = 90) -> set[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert worker.poll() is None, "the worker exited"
        pids = pool_pids(url, worker.pid)
        if len(pids) >= n:
            return pids
        time.sleep(0.2)
    raise TimeoutError("the worker's pool processes did not register")


@pytest.fixture(scope="module")
def queue() -> str:
    return f"azr-delivery-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def worker_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("delivery") / "worker.log"


@pytest.fixture(scope="module")
def worker(redis_url: str, queue: str, worker_log: Path) -> Iterator[subprocess.Popen[bytes]]:
    # two pool processes: a chunk handed out a second time would find an idle one to run on
    proc = start_worker(redis_url, 2, queue=queue, env=LIMITS, log_file=worker_log)
    try:
        wait_pool(redis_url, proc, 2)
        yield proc
    finally:
        stop_worker(proc)
        redis.Redis.from_url(redis_url).delete(WORKERS_KEY)


def test_a_visibility_timeout_below_the_chunk_budget_refuses_to_start(
    redis_url: str, tmp_path: Path
) -> None:
    # 2 s would hand a chunk of two 6 s items to a second worker while the first still runs it
    env = {**LIMITS, "AZR_EXECUTOR__VISIBILITY_TIMEOUT_S": "2"}
    queue, worker_log = f"azr-refused-{uuid.uuid4().hex[:8]}", tmp_path / "worker.log"
    proc = start_worker(redis_url, 1, queue=queue, env=env, log_file=worker_log)
    try:
        code = proc.wait(60)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        stop_worker(proc)
    log = worker_log.read_text(errors="replace")
    assert code not in (None, 0), f"the worker started with a too short visibility timeout:\n{log}"
    assert "VISIBILITY_TIMEOUT_S=2 is not above the longest a chunk may run" in log
    with pytest.raises(VisibilityTimeoutTooShort, match="not above"):
        create_app(redis_url, Settings(executor=cfg(queue, visibility_timeout_s=2)))


def test_the_visibility_timeout_is_derived_from_the_limits(queue: str) -> None:
    budget = chunk_budget_s(cfg(queue))
    assert budget >= 2 * 6  # two items at the largest timeout, one after the other
    app = make_celery("redis://127.0.0.1:1/0", cfg(queue))
    assert app.conf.broker_transport_options["visibility_timeout"] > budget
    assert app.conf.task_time_limit == budget
    explicit = make_celery("redis://127.0.0.1:1/0", cfg(queue, visibility_timeout_s=budget + 1))
    assert explicit.conf.broker_transport_options["visibility_timeout"] == budget + 1


def test_a_long_chunk_runs_once(
    redis_url: str, queue: str, worker: subprocess.Popen[bytes], worker_log: Path
) -> None:
    seen = set(received(worker_log))
    app = create_app(redis_url, Settings(executor=cfg(queue)))
    items = [{"program": SLEEPER, "input": "3", "timeout_s": 6} for _ in range(2)]
    started = time.monotonic()
    with TestClient(app) as client:
        r = client.post("/v1/run", json={"items": items})
        elapsed = time.monotonic() - started
        assert r.status_code == 200, r.text
        assert [x["status"] for x in r.json()["results"]] == ["ok", "ok"]
        # longer than a 2 s visibility timeout would have allowed; then give a redelivery the
        # time to show up on the idle pool process
        assert elapsed > 3
        time.sleep(4)
    ids = [i for i in received(worker_log) if i not in seen]
    assert len(ids) == 1, f"the chunk was received {len(ids)} times: {ids}"


def test_revoke_after_a_504_stops_the_running_chunk(
    redis_url: str, queue: str, worker: subprocess.Popen[bytes], worker_log: Path
) -> None:
    seen = set(received(worker_log))
    before = wait_pool(redis_url, worker, 2)
    # each pool process with what it started (its fork-servers and any children they have)
    started = {pid: {c.pid for c in psutil.Process(pid).children(recursive=True)} for pid in before}
    impatient = create_app(redis_url, Settings(executor=cfg(queue, request_timeout_s=2)))
    item = {"program": SLEEPER, "input": "6", "timeout_s": 6}
    with TestClient(impatient) as client:
        r = client.post("/v1/run", json={"items": [item, item]})
    assert r.status_code == 504
    # the pool process that ran the chunk is terminated with everything it started, well
    # before its 2 x 6 s of sleeps would have ended
    killed: set[int] = set()
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        alive = {p.pid for p in psutil.Process(worker.pid).children(recursive=True)}
        killed = before - alive
        if killed and not any(started[pid] & alive for pid in killed):
            break
        time.sleep(0.1)
    assert len(killed) == 1, "no pool process was stopped by the revoke"
    (pool,) = killed
    assert started[pool], "the pool process had started no sandbox processes"
    assert not started[pool] & alive, "the pool process's sandbox processes outlived it"
    # ... and the worker goes on (a fresh pool process replaces it); the chunk is not rerun
    patient = create_app(redis_url, Settings(executor=cfg(queue, request_timeout_s=60)))
    with TestClient(patient) as client:
        r = client.post("/v1/run", json={"items": [{"program": SLEEPER, "input": "0"}]})
    assert r.status_code == 200 and r.json()["results"][0]["status"] == "ok", r.text
    wait_pool(redis_url, worker, 2)
    ids = [i for i in received(worker_log) if i not in seen]
    assert len(ids) == len(set(ids)) == 2, ids


def test_a_worker_refuses_a_chunk_over_its_budget(
    redis_url: str, queue: str, worker: subprocess.Popen[bytes]
) -> None:
    # an API that cuts chunks of 3 for a worker whose budget is for chunks of 2: a clear 502
    wider = ExecutorSettings(queue=queue, timeout_s=2, max_timeout_s=6, chunk_size=3)
    with TestClient(create_app(redis_url, Settings(executor=wider))) as client:
        items = [{"program": SLEEPER, "input": "0"} for _ in range(3)]
        r = client.post("/v1/run", json={"items": items})
    assert r.status_code == 502 and "over this worker's chunk_size" in r.json()["detail"]
