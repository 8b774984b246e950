"""pytest plugin for `make images-smoke`: the executor tests' `engine` fixture answered by the
executor API running in the same container (AZR_SMOKE_EXECUTOR_URL), so the attack suite and
the sandbox-semantics tests of tests/executor/ run, as they are in the tree, against the image.

Loaded with --noconftest: tests that need an in-process fixture this plugin does not provide
(a Redis, a Celery worker, a TestClient) are skipped with the names they need, and so are the
ones that inspect the fork-server processes (not visible through HTTP)."""

from __future__ import annotations

import json
import os
import urllib.request
from typing import Any

import pytest

URL = os.environ.get("AZR_SMOKE_EXECUTOR_URL", "http://127.0.0.1:8100")
BUILTIN_FIXTURES = {"request"}


class HttpEngine:
    """What the tests use of services.executor.engine.Engine, over POST /v1/run."""

    def run(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        request = urllib.request.Request(
            f"{URL}/v1/run",
            data=json.dumps({"items": items}).encode(),
            headers={
                "content-type": "application/json",
                "authorization": f"Bearer {os.environ.get('AZR_API_TOKEN', '')}",
            },
        )
        with urllib.request.urlopen(request, timeout=600) as response:
            return list(json.load(response)["results"])

    @property
    def pair(self) -> Any:
        pytest.skip("the fork-server processes are not visible through the HTTP API")


@pytest.fixture(scope="session")
def engine() -> HttpEngine:
    return HttpEngine()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        defs = item._fixtureinfo.name2fixturedefs  # type: ignore[attr-defined]
        missing = [n for n in item.fixturenames if n not in defs and n not in BUILTIN_FIXTURES]  # type: ignore[attr-defined]
        if missing:
            item.add_marker(pytest.mark.skip(reason=f"needs in-process fixtures {missing}"))
