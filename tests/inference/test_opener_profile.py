"""The proposer and solver routes under the opener prompt profile, over a real transformers engine
with the tiny random model: every reply starts with its role's opener, ends at the profile's stop
strings, and is parsed by the profile's parser (a random model's text must be refused with a
reason, never crash or score)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from azr.contracts.inference import ProposeRequest, Sampling
from azr.core.tasks import Task, TaskType
from services.inference.app import build_app
from services.inference.engine import Sample
from services.inference.service import Finished, InferenceService
from services.inference.transformers_engine import TransformersEngine
from services.proposer.router import proposal_out

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
def service(tiny_model_dir: Path) -> InferenceService:
    engine = TransformersEngine(tiny_model_dir, device="cpu")
    return InferenceService(
        engine=engine, solve_profile="opener", propose_profile="opener", banned=["os"]
    )


@pytest.fixture(scope="module")
def client(service: InferenceService) -> Iterator[TestClient]:
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
            second = p["continuation"]
            own = p["text"] + ("\n\nf(" + second["text"] if second else "")
            assert p["response"].endswith(own) and p["response"].startswith("```python\n")
            assert second is None or p["text"].endswith("```")
            assert p["parsed"] or p["error"]


def test_program_proposal_second_stage(client: TestClient, service: InferenceService) -> None:
    """A first stage that closed its program block is continued from the followup (a real
    generation with its own prompt); one that ran to the length limit is not."""
    spec = service.propose_spec(TaskType.DEDUCTION, [TASKS[0]], 10, Sampling(max_tokens=8))
    prompt = service.render_spec(spec).text
    closed = Sample("x):\n    return x * 2\n```", [1], [2], [-0.1], "stop", 0)
    cut = Sample("x):\n    return x", [1], [2], [-0.1], "length", 0)
    sampling = Sampling(max_tokens=8, seed=0)
    second, none = asyncio.run(service.second_stage(prompt, [closed, cut], spec, sampling))
    assert none is None and second is not None
    tokenizer = service.engine.tokenizer
    continued = tokenizer.decode(second.prompt_token_ids)
    assert continued.endswith(closed.text + spec.followup)
    assert 0 < len(second.completion_token_ids) <= 8
    assert len(second.logprobs) == len(second.completion_token_ids)
    # the line end (a stop string) ends it: the second stage is one call's arguments
    assert "\n" not in second.text.rstrip("\n")

    # the proposal the route returns: both stages parsed together, each its own sequence
    body = ProposeRequest(task_type=TaskType.DEDUCTION, references=[task_json(TASKS[0])])
    finished = Finished(closed, spec.prefill + closed.text)
    answer = Sample("[5, 2])\n", [3, 4], [5, 6, 7], [-0.2] * 3, "stop", 0)
    out = proposal_out(spec, body, finished, answer, None)
    assert out.format_ok and out.program == "def f(x):\n    return x * 2"
    assert out.inputs == ["[5, 2]"] and out.text == closed.text
    assert out.continuation is not None and out.continuation.text == answer.text
    assert out.continuation.prompt_token_ids == [3, 4] and out.response.endswith("f([5, 2])\n")
    assert not proposal_out(spec, body, finished, None, None).format_ok  # no input at all
