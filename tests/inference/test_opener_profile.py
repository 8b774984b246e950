"""The proposer and solver routes under the opener prompt profile, over a real transformers engine
with the tiny random model: every reply starts with its role's opener, ends at the profile's stop
strings, and is parsed by the profile's parser (a random model's text must be refused with a
reason, never crash or score)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from azr.core.tasks import Task, TaskType
from services.inference.app import build_app
from services.inference.service import InferenceService
from services.inference.transformers_engine import TransformersEngine

TOKEN = "test-token"
PROGRAM = "def f(x):\n    return x + 1"
TASKS = [
    Task(TaskType.DEDUCTION, PROGRAM, ("3",), ("4",)),
    Task(TaskType.ABDUCTION, PROGRAM, ("3",), ("4",)),
    Task(TaskType.INDUCTION, PROGRAM, ("1", "2", "3", "4"), ("2", "3", "4", "5"), "adds one"),
]


def task_json(task: Task) -> dict[str, object]:
    return {
        "task_type": task.task_type.value,
        "program": task.program,
        "inputs": list(task.inputs),
        "outputs": list(task.outputs),
        "message": task.message,
    }


@pytest.fixture(scope="module")
def client(tiny_model_dir: Path) -> Iterator[TestClient]:
    engine = TransformersEngine(tiny_model_dir, device="cpu")
    service = InferenceService(
        engine=engine, solve_profile="opener", propose_profile="opener", banned=["os"]
    )
    with TestClient(
        build_app(service, role="inference", token=TOKEN, wait_for_engine=True),
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as c:
        yield c


def test_solve_mixed_task_types_with_their_openers(client: TestClient) -> None:
    body = {"tasks": [task_json(t) for t in TASKS], "n": 2, "sampling": {"max_tokens": 16}}
    response = client.post("/v1/solve", json=body)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    openers = ["f(3) returns ", "f(", "```python\ndef f("]
    for result, opener, task in zip(results, openers, TASKS, strict=True):
        assert result["prompt"].endswith(opener) and "<think>" not in result["prompt"]
        assert "Example" not in result["prompt"] and "example" not in result["prompt"]
        assert len(result["answers"]) == 2
        for answer in result["answers"]:
            assert answer["response"] == opener + answer["text"]
            if task.task_type is not TaskType.INDUCTION:
                # a value or a call is one line: the line end stops the generation
                assert "\n" not in answer["text"].rstrip("\n")
            assert answer["format_ok"] or answer["error"]


def test_propose_with_the_opener(client: TestClient) -> None:
    for task_type, opener in (("deduction", "def f("), ("induction", "\nf(")):
        body = {
            "task_type": task_type,
            "references": [task_json(TASKS[0])],
            "n": 2,
            "n_inputs": 3,
            "sampling": {"max_tokens": 16, "seed": 0},
        }
        response = client.post("/v1/propose", json=body)
        assert response.status_code == 200, response.text
        data = response.json()
        assert data["prompt"].endswith(opener)
        for p in data["proposals"]:
            assert p["response"].endswith(p["text"]) and p["response"].startswith("```python\n")
            assert p["parsed"] or p["error"]
