"""The request-body cap of every service (gateway, executor, inference, trainer), over real
uvicorn sockets: a chunked body (no Content-Length) is counted as it arrives and refused with 413
before it ends, before any JSON parsing and, on the gateway, before the token check."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from azr.settings import ExecutorSettings, Settings
from tests.common.servers import chunked_post, served

CAP = 16 * 1024
PIECE = b"x" * 1024
TOKEN = "gateway-token"
ROUTES = {
    "gateway": "/v1/runs",
    "executor": "/v1/run",
    "inference": "/v1/generate",
    "trainer": "/v1/status",
}


@pytest.fixture(scope="module")
def ports(
    redis_url: str, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, int]]:
    from services.executor.api import create_app as executor_app
    from services.gateway.app import create_app as gateway_app
    from services.inference.app import build_app
    from services.inference.service import InferenceService
    from services.inference.transformers_engine import TransformersEngine
    from services.trainer.app import create_app as trainer_app
    from services.trainer.service import TrainerService

    data = tmp_path_factory.mktemp("caps")
    settings = Settings(
        data_dir=data,
        api_token=TOKEN,
        max_body_bytes=CAP,
        executor=ExecutorSettings(queue=f"azr-caps-{uuid.uuid4().hex[:8]}"),
    )
    engine = TransformersEngine(tiny_model_dir, device="cpu")
    apps = {
        "gateway": gateway_app(settings),
        "executor": executor_app(redis_url, settings),
        "inference": build_app(
            InferenceService(engine=engine),
            manage_engine=False,
            max_body_bytes=CAP,
            checkpoint_root=data / "checkpoints",
        ),
        "trainer": trainer_app(TrainerService(settings, redis_url)),
    }
    with contextlib.ExitStack() as stack:
        yield {name: stack.enter_context(served(app)) for name, app in apps.items()}


@pytest.mark.parametrize("service", list(ROUTES))
def test_an_endless_chunked_body_gets_413_before_it_ends(
    ports: dict[str, int], service: str
) -> None:
    # 20 KiB of a body that never ends: a server that waits for the whole body never answers
    status, body = chunked_post(ports[service], ROUTES[service], [PIECE] * 20, finish=False)
    assert status == 413, f"{service}: no 413 before the body ended (status {status})"
    assert json.loads(body)["detail"] == f"request body over {CAP} bytes"


@pytest.mark.parametrize("service", list(ROUTES))
def test_a_whole_chunked_body_over_the_cap_gets_413(ports: dict[str, int], service: str) -> None:
    status, _ = chunked_post(ports[service], ROUTES[service], [PIECE] * 17, finish=True)
    assert status == 413


def test_the_gateway_caps_the_body_before_the_token_check(ports: dict[str, int]) -> None:
    # no Authorization header: the size answer comes first, nothing was parsed
    status, _ = chunked_post(ports["gateway"], "/v1/runs", [b"{" + PIECE] * 17, finish=True)
    assert status == 413
    # within the cap the same request reaches the token check
    status, _ = chunked_post(ports["gateway"], "/v1/runs", [b"{}"], finish=True)
    assert status == 401


@pytest.mark.parametrize("service", list(ROUTES))
def test_a_declared_length_over_the_cap_gets_413(ports: dict[str, int], service: str) -> None:
    r = httpx.post(f"http://127.0.0.1:{ports[service]}{ROUTES[service]}", content=b"x" * (CAP + 1))
    assert r.status_code == 413 and "over" in r.json()["detail"]


def test_chunked_bodies_within_the_cap_reach_the_app(ports: dict[str, int]) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    # the gateway parses it (a 422 names the missing field) ...
    status, body = chunked_post(
        ports["gateway"], "/v1/runs", [b'{"name": ', b'"x", "loop": 5}'], finish=True, headers=auth
    )
    assert status == 422 and b"loop" in body
    # ... and so does the executor (an empty batch is invalid), from several chunks
    status, body = chunked_post(ports["executor"], "/v1/run", [b'{"items"', b": []}"], finish=True)
    assert status == 422 and b"items" in body
    # a body exactly at the cap is not refused
    exact = b'{"items": "' + b"y" * (CAP - 13) + b'"}'
    assert len(exact) == CAP
    status, _ = chunked_post(ports["executor"], "/v1/run", [exact], finish=True)
    assert status == 422
