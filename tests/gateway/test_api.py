"""The public REST API: every route's success path and its 401/404/409/422 answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from azr.core.tasks import Task, TaskType
from azr.settings import Settings
from services.gateway.app import create_app
from services.gateway.store import TaskStore
from tests.gateway.gw_fixtures import (  # noqa: F401
    AUTH,
    LocalControl,
    api_fixture,
    write_checkpoint,
)

Api = tuple[TestClient, TaskStore, LocalControl]


def make_run(client: TestClient, start: bool = True, **settings: Any) -> dict[str, Any]:
    res = client.post(
        "/v1/runs", json={"name": "t", "settings": settings, "start": start}, headers=AUTH
    )
    assert res.status_code == 201, res.text
    return res.json()


MUTATING = [
    ("post", "/v1/runs", {"name": "x"}),
    ("post", "/v1/runs/1/pause", None),
    ("post", "/v1/runs/1/resume", None),
    ("post", "/v1/runs/1/stop", None),
    (
        "post",
        "/v1/tasks",
        {
            "run_id": 1,
            "task_type": "deduction",
            "program": "def f(a):\n    return a",
            "inputs": ["1"],
        },
    ),
    ("post", "/v1/tasks/1/quarantine", {"reason": "x"}),
    ("post", "/v1/weights/swap", {"version": 1}),
]


@pytest.mark.parametrize(("method", "path", "body"), MUTATING)
def test_mutating_routes_need_the_token(api: Api, method: str, path: str, body: Any) -> None:
    client, _, control = api
    res = client.request(method, path, json=body)
    assert res.status_code == 401 and "bearer token" in res.json()["detail"]
    res = client.request(method, path, json=body, headers={"Authorization": "Bearer nope"})
    assert res.status_code == 401
    assert control.calls == []


def test_run_lifecycle_calls_the_control(api: Api) -> None:
    client, _, control = api
    run = make_run(client, batch_size=4, steps=3)
    rid = run["id"]
    assert run["status"] == "running" and run["settings"]["batch_size"] == 4
    assert run["settings"]["n_rollouts"] == Settings().loop.n_rollouts  # server default kept
    assert client.post(f"/v1/runs/{rid}/pause", headers=AUTH).json()["status"] == "paused"
    res = client.post(f"/v1/runs/{rid}/pause", headers=AUTH)
    assert res.status_code == 409 and "paused" in res.json()["detail"]
    assert client.post(f"/v1/runs/{rid}/resume", headers=AUTH).json()["status"] == "running"
    assert client.post(f"/v1/runs/{rid}/stop", headers=AUTH).json()["status"] == "stopped"
    assert client.post(f"/v1/runs/{rid}/resume", headers=AUTH).status_code == 409
    assert control.calls == [("start", rid), ("pause", rid), ("resume", rid), ("stop", rid)]
    assert client.get(f"/v1/runs/{rid}").json()["status"] == "stopped"
    listed = client.get("/v1/runs", params={"status": "stopped"}).json()
    assert [r["id"] for r in listed["items"]] == [rid] and listed["total"] == 1
    # A run created without starting is started by resume.
    idle = make_run(client, start=False)
    assert idle["status"] == "created"
    assert client.post(f"/v1/runs/{idle['id']}/resume", headers=AUTH).json()["status"] == "running"
    assert control.calls[-1] == ("start", idle["id"])


@pytest.mark.parametrize(
    ("settings", "needle"),
    [({"bogus": 1}, "bogus"), ({"batch_size": "many"}, "batch_size"), ({"mode": "warp"}, "mode")],
)
def test_create_run_validates_settings(api: Api, settings: dict[str, Any], needle: str) -> None:
    client, store, _ = api
    res = client.post("/v1/runs", json={"name": "x", "settings": settings}, headers=AUTH)
    assert res.status_code == 422 and needle in res.json()["detail"]
    assert store.list_runs()[1] == 0


def test_unknown_ids_are_404(api: Api) -> None:
    client, _, _ = api
    for path in ("/v1/runs/999", "/v1/runs/999/metrics", "/v1/tasks/999"):
        res = client.get(path)
        assert res.status_code == 404 and "999" in res.json()["detail"], path
    for path, body in (
        ("/v1/runs/999/pause", None),
        ("/v1/tasks/999/quarantine", {"reason": "r"}),
        ("/v1/weights/swap", {"version": 999}),
    ):
        res = client.post(path, json=body, headers=AUTH)
        assert res.status_code == 404 and "999" in res.json()["detail"], path
    body = {
        "run_id": 999,
        "task_type": "deduction",
        "program": "def f(a):\n    return a",
        "inputs": ["1"],
    }
    assert client.post("/v1/tasks", json=body, headers=AUTH).status_code == 404


@pytest.mark.parametrize(
    "query",
    [
        {"task_type": "telepathy"},
        {"status": "happy"},
        {"source": "ether"},
        {"run_id": "abc"},
        {"run_id": str(2**40)},
        {"step_min": "-1"},
        {"step_min": "5", "step_max": "2"},
        {"limit": "0"},
        {"limit": "100000"},
        {"q": "x" * 500},
    ],
)
def test_bad_task_filters_are_422(api: Api, query: dict[str, str]) -> None:
    client, _, _ = api
    paths = ["/v1/tasks"] if "limit" in query else ["/v1/tasks", "/v1/tasks/export"]
    for path in paths:
        res = client.get(path, params=query)
        assert res.status_code == 422, (path, query, res.text)
        assert res.json()["detail"]


def test_inject_validates_through_the_control(api: Api) -> None:
    client, store, _ = api
    rid = make_run(client)["id"]
    body = {
        "run_id": rid,
        "task_type": "deduction",
        "program": "def f(s):\n    return s[::-1].upper()",
        "inputs": ["'abc'"],
    }
    res = client.post("/v1/tasks", json=body, headers=AUTH)
    assert res.status_code == 201, res.text
    task = res.json()
    assert task["outputs"] == [repr("abc"[::-1].upper())]
    assert (task["source"], task["status"], task["run_id"]) == ("injected", "injected", rid)
    assert task["validation"]["valid"] is True
    assert task["id"] in [i for i, _ in store.buffer(rid, "deduction")]
    # The same program re-spaced is a duplicate.
    dup = dict(body, program="def f(s):\n\n    return s[::-1].upper()  # again")
    res = client.post("/v1/tasks", json=dup, headers=AUTH)
    assert res.status_code == 409 and str(task["id"]) in res.json()["detail"]
    # A program that fails is rejected with the validator's reason.
    bad = dict(body, program="def f(s):\n    return s / 0")
    res = client.post("/v1/tasks", json=bad, headers=AUTH)
    assert res.status_code == 422 and "TypeError" in res.json()["detail"]
    assert res.json()["status"] == "error"
    # Deduction takes one input; induction takes several and keeps its message.
    res = client.post("/v1/tasks", json=dict(body, inputs=["'a'", "'b'"]), headers=AUTH)
    assert res.status_code == 422 and "exactly one input" in res.json()["detail"]
    ind = {
        "run_id": rid,
        "task_type": "induction",
        "program": "def f(x):\n    return x * 3",
        "inputs": ["1", "'ab'", "[0]"],
        "message": "triples things",
    }
    res = client.post("/v1/tasks", json=ind, headers=AUTH)
    assert res.status_code == 201 and res.json()["outputs"] == ["3", "'ababab'", "[0, 0, 0]"]
    assert res.json()["message"] == "triples things"
    # NUL characters and unknown fields are refused before anything runs.
    res = client.post("/v1/tasks", json=dict(body, program="def f(a):\x00"), headers=AUTH)
    assert res.status_code == 422 and "NUL" in res.json()["detail"]
    assert client.post("/v1/tasks", json=dict(body, extra=1), headers=AUTH).status_code == 422
    assert "azr_gateway_injected_tasks_total" in client.get("/metrics").text


def _fill(store: TaskStore, rid: int) -> list[int]:
    ids = []
    for i in range(6):
        task = Task(
            TaskType.DEDUCTION if i % 2 else TaskType.ABDUCTION,
            f"def f(x):\n    return x - {i}",
            (str(i),),
            ("0",),
        )
        tid, _ = store.add_task(rid, task, step=i, proposer_version=i, validation={"valid": True})
        assert tid is not None
        ids.append(tid)
    return ids


def test_list_get_quarantine_export(api: Api) -> None:
    client, store, _ = api
    rid = make_run(client)["id"]
    ids = _fill(store, rid)
    page = client.get("/v1/tasks", params={"run_id": rid, "limit": 2, "offset": 1}).json()
    assert page["total"] == 6 and [t["id"] for t in page["items"]] == ids[::-1][1:3]
    ded = client.get("/v1/tasks", params={"task_type": "deduction", "step_min": 2}).json()
    assert [t["step"] for t in ded["items"]] == [5, 3]
    assert client.get("/v1/tasks", params={"q": "x - 4"}).json()["total"] == 1
    got = client.get(f"/v1/tasks/{ids[3]}").json()
    assert got["proposer_weight_version"] == 3 and got["fingerprint"]
    res = client.post(f"/v1/tasks/{ids[3]}/quarantine", json={"reason": "trivial"}, headers=AUTH)
    assert res.status_code == 200 and res.json()["status"] == "quarantined"
    assert res.json()["status_reason"] == "trivial"
    assert ids[3] not in [i for i, _ in store.buffer(rid, "deduction")]
    assert (
        client.post(f"/v1/tasks/{ids[3]}/quarantine", json={"reason": ""}, headers=AUTH).status_code
        == 422
    )
    res = client.get("/v1/tasks/export", params={"run_id": rid})
    assert res.status_code == 200 and res.headers["content-type"].startswith("application/x-ndjson")
    rows = [json.loads(line) for line in res.text.splitlines()]
    assert [r["id"] for r in rows] == ids
    assert rows[3]["status"] == "quarantined" and rows[0]["outputs"] == ["0"]
    only = client.get("/v1/tasks/export", params={"status": "quarantined"}).text.splitlines()
    assert [json.loads(x)["id"] for x in only] == [ids[3]]


def test_metrics_route(api: Api) -> None:
    client, store, _ = api
    rid = make_run(client)["id"]
    for step in (1, 2, 3):
        store.record_step(
            rid,
            step,
            {"timings": {"propose": 1.0, "train": 2.0}},
            {
                "deduction/propose": {
                    "valid_rate": step / 4,
                    "reward_mean": 0.1 * step,
                    "tokens": 100,
                },
                "deduction/solve": {"solve_rate": 1 - step / 4},
            },
        )
    data = client.get(f"/v1/runs/{rid}/metrics").json()
    assert [s["step"] for s in data["steps"]] == [1, 2, 3]
    assert data["steps"][0]["timings"] == {"propose": 1.0, "train": 2.0}
    rows = {(g["step"], g["role"]): g for g in data["groups"]}
    assert rows[(2, "propose")]["valid_rate"] == 0.5 and rows[(3, "solve")]["solve_rate"] == 0.25
    part = client.get(f"/v1/runs/{rid}/metrics", params={"step_min": 2, "step_max": 2}).json()
    assert [s["step"] for s in part["steps"]] == [2] and len(part["groups"]) == 2
    assert (
        client.get(f"/v1/runs/{rid}/metrics", params={"step_min": 3, "step_max": 1}).status_code
        == 422
    )


def test_weights_current_history_and_swap(api: Api, tmp_path: Path) -> None:
    client, store, control = api
    rid = make_run(client)["id"]
    assert client.get("/v1/weights/current").json() == {"current": None, "latest": None}
    root = client.app.state.settings.checkpoint_dir  # type: ignore[attr-defined]
    for v in (1, 2):
        folder, checksum = write_checkpoint(root, v)
        store.record_weight_version(v, str(folder), checksum, run_id=rid, batch_id=f"{rid}:{v}")
    # Recorded but with no checkpoint on disk: the control refuses, the API answers 404.
    store.record_weight_version(3, str(root / "v000003"), "0" * 64, run_id=rid)
    current = client.get("/v1/weights/current").json()
    assert current["current"] is None and current["latest"]["version"] == 3
    res = client.post("/v1/weights/swap", json={"version": 1}, headers=AUTH)
    assert res.status_code == 200, res.text
    assert res.json()["result"]["loaded"] == 1 and res.json()["weights"]["loaded_at"]
    assert client.get("/v1/weights/current").json()["current"]["version"] == 1
    res = client.post("/v1/weights/swap", json={"version": 3}, headers=AUTH)
    assert res.status_code == 404 and "manifest" in res.json()["detail"]
    assert client.get("/v1/weights/current").json()["current"]["version"] == 1
    assert control.calls[-1] == ("swap", 1)
    hist = client.get("/v1/weights", params={"run_id": rid}).json()
    assert [w["version"] for w in hist["items"]] == [3, 2, 1] and hist["total"] == 3
    assert client.post("/v1/weights/swap", json={"version": -1}, headers=AUTH).status_code == 422


def test_read_only_gateway_without_control(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, api_token="t")
    app = create_app(settings)
    with TestClient(app) as client:
        auth = {"Authorization": "Bearer t"}
        res = client.post("/v1/runs", json={"name": "x"}, headers=auth)
        assert res.status_code == 503 and "no run control" in res.json()["detail"]
        res = client.post("/v1/runs", json={"name": "x", "start": False}, headers=auth)
        assert res.status_code == 201
        assert client.get("/readyz").json() == {"ready": True, "database": "ok", "control": False}
        assert client.get("/healthz").status_code == 200
        assert "AZR gateway" in client.get("/openapi.json").text
    app.state.store.engine.dispose()


def test_a_second_concurrent_run_is_refused_with_409(api: Api) -> None:
    client, _, _ = api
    first = make_run(client)
    res = client.post("/v1/runs", json={"name": "second"}, headers=AUTH)
    assert res.status_code == 409
    assert f"run {first['id']}" in res.json()["detail"] and "running" in res.json()["detail"]
    # a run created without starting is fine; resuming it while the first runs is not
    idle = make_run(client, start=False)
    res = client.post(f"/v1/runs/{idle['id']}/resume", headers=AUTH)
    assert res.status_code == 409 and f"run {first['id']}" in res.json()["detail"]
    assert client.post(f"/v1/runs/{first['id']}/stop", headers=AUTH).status_code == 200
    assert client.post(f"/v1/runs/{idle['id']}/resume", headers=AUTH).status_code == 200
