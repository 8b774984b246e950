"""HTTP tests: the FastAPI app in-process, real Redis, a real Celery worker process with its own
fork-server pair."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.executor.api import create_app
from services.executor.main import start_worker, stop_worker, wait_ready
from tests.executor.conftest import children_of


@pytest.fixture(scope="module")
def worker(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    log = Path(tmp_path_factory.mktemp("worker")) / "worker.log"
    proc = start_worker(redis_url, concurrency=1, queue="azr-executor-test", log_file=log)
    try:
        wait_ready(redis_url, 1)
        yield proc.pid
    finally:
        stop_worker(proc)
    assert proc.poll() is not None


@pytest.fixture(scope="module")
def client(
    redis_url: str, worker: int, monkeypatch_module: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    monkeypatch_module.setenv("AZR_EXECUTOR__QUEUE", "azr-executor-test")
    from azr.settings import Settings

    with TestClient(create_app(redis_url, Settings())) as c:
        yield c


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_readyz_reports_layers(client: TestClient) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    layers = r.json()["layers"]
    for name in ("seccomp", "landlock", "rlimits", "netns", "drop_privileges", "static_checks"):
        assert name in layers


def test_sandbox_route_reports_layers_and_runtime(client: TestClient) -> None:
    r = client.get("/v1/sandbox")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["runtime"] == "native" and body["workers"] >= 1
    assert body["missing"] == [], body  # as root every layer is there
    for name in ("ipcns", "pidns", "seccomp", "audit_hook"):
        assert body["layers"][name]["active"], body["layers"][name]


def test_run_contract(client: TestClient) -> None:
    r = client.post(
        "/v1/run",
        json={
            "items": [
                {"program": "def f(s, n):\n    return s * n", "input": "'ab', 3"},
                {"program": "def f():\n    while True: pass", "input": "", "timeout_s": 0.5},
                {"program": "def f():\n    return open('/etc/passwd').read()", "input": ""},
            ]
        },
    )
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert [x["status"] for x in res] == ["ok", "timeout", "forbidden"]
    assert res[0]["output"] == repr("ab" * 3) and res[1]["output"] is None
    assert all(x["duration_ms"] > 0 for x in res)


def test_validate_contract(client: TestClient) -> None:
    r = client.post(
        "/v1/validate",
        json={
            "items": [
                {
                    "task_type": "deduction",
                    "program": "def f(x):\n    return x[::-1]",
                    "inputs": ["'abc'"],
                },
                {
                    "task_type": "abduction",
                    "program": "import os\ndef f(x):\n    return os.getcwd()",
                    "inputs": ["1"],
                },
                {
                    "task_type": "induction",
                    "program": "def f(a, b):\n    return a + b",
                    "inputs": ["1, 2", "'x',\n 'y'"],
                    "message": "adds",
                },
            ]
        },
    )
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert res[0]["valid"] and res[0]["outputs"] == [repr("cba")]
    assert not res[1]["valid"] and "os" in res[1]["reason"]
    assert res[2]["valid"] and res[2]["outputs"] == [repr(3), repr("xy")]


def test_verify_contract(client: TestClient) -> None:
    r = client.post(
        "/v1/verify",
        json={
            "items": [
                {
                    "task_type": "deduction",
                    "program": "def f(x):\n    return x",
                    "input": "1",
                    "output": "1",
                    "answer": "1.0",
                },
                {"task_type": "deduction", "output": "(1, 2)", "answer": "[1, 2]"},
                {
                    "task_type": "abduction",
                    "program": "def f(x):\n    return x % 3",
                    "output": "1",
                    "answer": "7",
                },
                {
                    "task_type": "induction",
                    "program": "def f(x):\n    return x * 2",
                    "answer": "def f(y):\n    return y + y",
                    "hidden": [{"input": "4", "output": "8"}, {"input": "'q'", "output": "'qq'"}],
                },
            ]
        },
    )
    assert r.status_code == 200, r.text
    assert [x["correct"] for x in r.json()["results"]] == [True, False, True, True]


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        ("/v1/run", {"items": []}, "items"),
        ("/v1/run", {"items": [{"input": "1"}]}, "program"),
        ("/v1/run", {"items": [{"program": "def f(): pass", "timeout_s": 10_000}]}, "timeout_s"),
        (
            "/v1/validate",
            {"items": [{"task_type": "nonsense", "program": "x", "inputs": ["1"]}]},
            "task_type",
        ),
        ("/v1/verify", {"items": [{"task_type": "deduction", "answer": "1"}]}, "output"),
        (
            "/v1/verify",
            {"items": [{"task_type": "induction", "answer": "def f(x): return x"}]},
            "hidden",
        ),
    ],
)
def test_bad_requests_are_4xx_naming_the_problem(
    client: TestClient, path: str, body: dict[str, object], needle: str
) -> None:
    r = client.post(path, json=body)
    assert 400 <= r.status_code < 500, r.text
    assert needle in r.json()["detail"]


def test_oversized_program_is_413(client: TestClient) -> None:
    r = client.post("/v1/run", json={"items": [{"program": "#" * 50_000, "input": ""}]})
    assert r.status_code == 413 and "program" in r.json()["detail"]


def test_metrics_and_no_leftover_children(client: TestClient, worker: int) -> None:
    client.post("/v1/run", json={"items": [{"program": "def f():\n    return 1", "input": ""}]})
    text = client.get("/metrics").text
    assert "azr_executor_executions_total" in text and "azr_executor_queue_depth" in text
    # worker -> pool process -> two fork-servers, whose children are all reaped by the reply
    for pool_proc in children_of(worker):
        for fork_server in children_of(pool_proc):
            # the started process stands in for the fork-server, pid 1 of its PID namespace
            for server in children_of(fork_server):
                assert children_of(server) == []
