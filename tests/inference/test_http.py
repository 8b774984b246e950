"""The proposer/solver/weights routes over a real transformers engine with the tiny model."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from azr.core.tasks import IDENTITY_INDUCTION_SEED, IDENTITY_SEED, Task, TaskType
from services.inference.app import build_app
from services.inference.service import InferenceService
from services.inference.transformers_engine import TransformersEngine
from tests.inference.helpers import corrupt, perturbed_checkpoint

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FAST = {"max_tokens": 24, "seed": 0}


def task_json(task: Task, task_type: TaskType | None = None) -> dict[str, object]:
    return {
        "task_type": (task_type or task.task_type).value,
        "program": task.program,
        "inputs": list(task.inputs),
        "outputs": list(task.outputs),
        "message": task.message,
    }


@pytest.fixture(scope="module")
def checkpoint_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("checkpoints")


@pytest.fixture(scope="module")
def client(tiny_model_dir: Path, checkpoint_root: Path) -> Iterator[TestClient]:
    engine = TransformersEngine(tiny_model_dir, device="cpu")
    service = InferenceService(engine=engine, max_model_len=2048, banned=["os", "sys"])
    app = build_app(
        service,
        role="inference",
        token=TOKEN,
        checkpoint_root=checkpoint_root,
        wait_for_engine=True,
    )
    # every data route needs the service token; the client sends it unless a test overrides it
    with TestClient(app, headers=AUTH) as c:
        yield c


def test_health_ready_and_weights_info(client: TestClient, tiny_model_dir: Path) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["version"] == 0
    info = client.get("/v1/weights").json()
    assert info["engine"] == "transformers" and info["version"] == 0
    assert info["path"] == str(tiny_model_dir) and len(info["checksum"]) == 64


@pytest.mark.parametrize("task_type", ["deduction", "abduction"])
def test_propose_returns_parsed_proposals_with_tokens(client: TestClient, task_type: str) -> None:
    body = {
        "task_type": task_type,
        "references": [task_json(IDENTITY_SEED)],
        "n": 3,
        "sampling": {**FAST, "answer_prefill": True},
    }
    response = client.post("/v1/propose", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["task_type"] == task_type and "snippet_1" in data["prompt"]
    assert data["prompt"].endswith("def f(")  # the answer prefill opened the python block
    assert len(data["proposals"]) == 3
    for p in data["proposals"]:
        assert p["version"] == 0
        assert len(p["completion_token_ids"]) == len(p["logprobs"]) > 0
        assert p["response"].endswith(p["text"]) and p["response"].startswith(" I will")
        assert all(lp <= 0 for lp in p["logprobs"])
        # A random model writes nonsense: the parse must say why it failed, not crash.
        assert p["parsed"] or p["error"]


def test_propose_induction_keeps_the_reference_program(client: TestClient) -> None:
    body = {
        "task_type": "induction",
        "references": [task_json(IDENTITY_INDUCTION_SEED)],
        "n": 2,
        "n_inputs": 4,
        "sampling": FAST,
    }
    data = client.post("/v1/propose", json=body).json()
    for p in data["proposals"]:
        assert p["task_type"] == "induction"
        assert p["program"] in (None, IDENTITY_INDUCTION_SEED.program)


def test_solve_answers_every_task(client: TestClient) -> None:
    tasks = [
        task_json(IDENTITY_SEED),
        task_json(IDENTITY_SEED, TaskType.ABDUCTION),
        task_json(IDENTITY_INDUCTION_SEED),
    ]
    response = client.post("/v1/solve", json={"tasks": tasks, "n": 2, "sampling": FAST})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["task_index"] for r in results] == [0, 1, 2]
    for r, t in zip(results, tasks, strict=True):
        assert r["error"] is None and len(r["answers"]) == 2
        assert all(a["task_type"] == t["task_type"] and a["version"] == 0 for a in r["answers"])
    # The induction solver must not see the program, only visible pairs and the message.
    assert "return a" not in results[2]["prompt"] and "input_1" in results[2]["prompt"]


def test_solve_reports_a_prompt_that_does_not_fit(client: TestClient) -> None:
    long_task = {
        **task_json(IDENTITY_SEED),
        "program": "def f(a):\n" + "    a = a\n" * 1500 + "    return a",
    }
    body = {"tasks": [long_task, task_json(IDENTITY_SEED)], "sampling": FAST}
    results = client.post("/v1/solve", json=body).json()["results"]
    assert "exceeds the model's context" in results[0]["error"] and results[0]["answers"] == []
    assert results[1]["error"] is None and len(results[1]["answers"]) == 1


def test_generate_accepts_text_and_token_ids(client: TestClient) -> None:
    body = {
        "prompts": ["hello", [1, 2, 3]],
        "n": 2,
        "sampling": {"temperature": 0, "max_tokens": 5},
    }
    data = client.post("/v1/generate", json=body).json()
    assert [len(o) for o in data["outputs"]] == [2, 2]
    assert data["outputs"][1][0]["prompt_token_ids"] == [1, 2, 3]


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        ("/v1/propose", {"task_type": "riddle"}, "task_type"),
        ("/v1/propose", {"task_type": "induction", "references": []}, "needs one reference"),
        ("/v1/propose", {"task_type": "deduction", "n": 0}, "n:"),
        ("/v1/propose", {"task_type": "deduction", "sampling": {"top_p": 0}}, "top_p"),
        ("/v1/propose", {"task_type": "deduction", "sampling": {"temprature": 1}}, "temprature"),
        (
            "/v1/propose",
            {
                "task_type": "deduction",
                "references": [
                    {"task_type": "deduction", "program": "def f(a): return a", "inputs": ["1"]}
                ],
            },
            "gold output",
        ),
        ("/v1/solve", {"tasks": []}, "tasks"),
        (
            "/v1/solve",
            {
                "tasks": [
                    {"task_type": "abduction", "program": "def f(a): return a", "inputs": ["1"]}
                ]
            },
            "needs its outputs",
        ),
        (
            "/v1/solve",
            {
                "tasks": [
                    {
                        "task_type": "deduction",
                        "program": "def f(a): return a",
                        "inputs": ["1", "2"],
                        "outputs": ["1"],
                    }
                ]
            },
            "pairs",
        ),
        ("/v1/generate", {"prompts": [[10**9]]}, "token ids must be below"),
        ("/v1/generate", {"prompts": [""]}, "empty"),
        ("/v1/generate", {"prompts": ["x"], "sampling": {"max_tokens": 5000}}, "context"),
    ],
)
def test_malformed_requests_get_a_clear_4xx(
    client: TestClient, path: str, body: dict[str, object], needle: str
) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 422, response.text
    assert needle in response.json()["detail"]


def test_non_json_body_is_a_4xx(client: TestClient) -> None:
    response = client.post(
        "/v1/solve", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert 400 <= response.status_code < 500


def test_weights_route_swaps_verifies_and_needs_a_token(
    client: TestClient, tiny_model_dir: Path, checkpoint_root: Path
) -> None:
    root = checkpoint_root / "swap"
    v1 = perturbed_checkpoint(tiny_model_dir, root, 1, scale=1.0)
    greedy = {"prompts": ["The quick brown fox"], "sampling": {"temperature": 0, "max_tokens": 12}}

    def completion() -> tuple[int, list[int]]:
        out = client.post("/v1/generate", json=greedy).json()["outputs"][0][0]
        return out["version"], out["completion_token_ids"]

    v0_version, v0_tokens = completion()
    missing = {"Authorization": ""}
    assert (
        client.post(
            "/v1/weights", json={"version": 1, "path": str(v1)}, headers=missing
        ).status_code
        == 401
    )
    wrong = {"Authorization": "Bearer nope"}
    assert (
        client.post("/v1/weights", json={"version": 1, "path": str(v1)}, headers=wrong).status_code
        == 401
    )

    bad = root / "bad"
    shutil.copytree(v1, bad)
    corrupt(bad)
    response = client.post("/v1/weights", json={"version": 2, "path": str(bad)}, headers=AUTH)
    assert (
        response.status_code == 422
        and "still serving the previous version" in response.json()["detail"]
    )
    assert completion() == (v0_version, v0_tokens)

    response = client.post("/v1/weights", json={"version": 1, "path": str(v1)}, headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["version"] == 1 and response.json()["swap_seconds"] > 0
    version, tokens = completion()
    assert version == 1 and tokens != v0_tokens

    assert (
        client.post(
            "/v1/weights", json={"version": 0, "path": str(tiny_model_dir)}, headers=AUTH
        ).status_code
        == 200
    )
    assert completion() == (0, v0_tokens)
    assert (
        client.post("/v1/weights", json={"version": -1, "path": "x"}, headers=AUTH).status_code
        == 422
    )

    metrics = client.get("/metrics").text
    assert 'azr_inference_swaps_total{status="rejected"}' in metrics
    assert "azr_inference_swap_seconds_count" in metrics
    assert 'azr_inference_tokens_generated_total{route="generate"}' in metrics


def test_engine_starts_in_the_background_and_readyz_reports_failure(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(tiny_model_dir / "config.json", broken / "config.json")  # no weights, no tokenizer
    service = InferenceService(engine=TransformersEngine(broken, device="cpu"))
    with TestClient(build_app(service, role="solver")) as c:
        for _ in range(200):
            report = c.get("/readyz").json()
            if "error" in report:
                break
            time.sleep(0.05)
        response = c.get("/readyz")
        assert response.status_code == 503 and response.json()["error"]
        # the liveness probe sees the fatal state too (in-process: no exit)
        health = c.get("/healthz")
        assert health.status_code == 503 and "engine start failed" in health.json()["reason"]
        body = {"tasks": [task_json(IDENTITY_SEED)], "sampling": FAST}
        unavailable = c.post("/v1/solve", json=body)
        assert unavailable.status_code == 503 and "not" in unavailable.json()["detail"]
