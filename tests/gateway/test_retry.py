"""Retries with backoff for idempotent calls: a real executor behind a proxy that injects
gateway errors (the fault a load balancer or a restarting pod produces), and a dead port."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from azr.common.retry import RetryPolicy
from azr.core.tasks import TaskType
from services.evaluation.executor_proc import executor_url
from services.gateway.loop.adapters import HttpExecutor, ServiceError
from tests.gateway.gw_fixtures import running_server

FAST = RetryPolicy(attempts=3, initial_wait_s=0.05, max_wait_s=0.2)
ITEM = (TaskType.DEDUCTION, "def f(a):\n    return a * 2", ["3"], None)


class FaultyProxy:
    """Forwards to `upstream`, but answers the next `failures` requests with `status`."""

    def __init__(self, upstream: str) -> None:
        self.upstream = httpx.Client(base_url=upstream, timeout=60)
        self.failures = 0
        self.status = 504
        self.seen = 0
        self.app = FastAPI()

        @self.app.post("/{path:path}")
        async def forward(path: str, request: Request) -> Response:
            self.seen += 1
            if self.failures > 0:
                self.failures -= 1
                return Response("upstream timed out", status_code=self.status)
            resp = self.upstream.post(
                f"/{path}",
                content=await request.body(),
                headers={"content-type": "application/json"},
            )
            return Response(resp.content, resp.status_code, media_type="application/json")


@pytest.fixture(scope="module")
def proxy(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[FaultyProxy, str]]:
    data = tmp_path_factory.mktemp("retry-executor")
    with executor_url(None, redis_url=redis_url, data_dir=data) as url:
        faulty = FaultyProxy(url)
        with running_server(faulty.app) as proxy_url:
            yield faulty, proxy_url


def test_one_504_is_retried_and_the_call_succeeds(proxy: tuple[FaultyProxy, str]) -> None:
    faulty, url = proxy
    faulty.failures, faulty.status, faulty.seen = 1, 504, 0
    (validation,) = HttpExecutor(url, timeout_s=60, retry=FAST).validate([ITEM])
    assert validation.valid and list(validation.outputs) == ["6"]
    assert faulty.seen == 2


def test_a_service_that_stays_unavailable_fails_with_its_name_and_cause(
    proxy: tuple[FaultyProxy, str],
) -> None:
    faulty, url = proxy
    faulty.failures, faulty.status, faulty.seen = 10, 503, 0
    with pytest.raises(ServiceError, match=r"executor POST /v1/validate .* 3 attempts.*503"):
        HttpExecutor(url, timeout_s=60, retry=FAST).validate([ITEM])
    assert faulty.seen == 3
    faulty.failures = 0


def test_a_request_error_is_not_retried(proxy: tuple[FaultyProxy, str]) -> None:
    faulty, url = proxy
    faulty.failures, faulty.seen = 0, 0
    bad = (TaskType.DEDUCTION, "def f(a):\n    return a", ["3"] * 10_000, None)
    with pytest.raises(ServiceError, match=r"answered (422|413|400)"):
        HttpExecutor(url, timeout_s=60, retry=FAST).validate([bad])
    assert faulty.seen == 1


def test_a_refused_connection_is_retried_then_named(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(ServiceError, match=r"executor POST /v1/validate .*ConnectError"):
        HttpExecutor(dead, timeout_s=5, retry=FAST).validate([ITEM])
