"""pytest plugin for `make images-smoke`: the executor tests' `engine` fixture answered by the
executor API running in the same container (AZR_SMOKE_EXECUTOR_URL), so the attack suite and
the sandbox-semantics tests of tests/executor/ run, as they are in the tree, against the image
(engine.run, .validate and .verify through /v1/run, /v1/validate and /v1/verify).

Loaded with --noconftest: tests that need an in-process fixture this plugin does not provide
(a Redis, a Celery worker, a TestClient) are skipped with the names they need, and so are the
ones that inspect the fork-server processes or change the engine's limits (neither reachable
through HTTP) or send an item over the API's text cap (refused with 422 before the engine)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

import pytest

from azr.contracts.executor import MAX_TEXT

URL = os.environ.get("AZR_SMOKE_EXECUTOR_URL", "http://127.0.0.1:8100")
BUILTIN_FIXTURES = {"request"}


class HttpEngine:
    """What the tests use of services.executor.engine.Engine, over POST /v1/run, /v1/validate
    and /v1/verify."""

    def _post(self, route: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        request = urllib.request.Request(
            f"{URL}/v1/{route}",
            data=json.dumps({"items": items}).encode(),
            headers={
                "content-type": "application/json",
                "authorization": f"Bearer {os.environ.get('AZR_API_TOKEN', '')}",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=600) as response:
                return list(json.load(response)["results"])
        except urllib.error.HTTPError as exc:
            if exc.code == 422 and over_the_text_cap(items):
                # the contract refuses it before the engine's own per-item caps could answer
                pytest.skip(f"an item is over the API's {MAX_TEXT}-character cap (422)")
            raise

    def run(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self._post("run", items)

    def validate(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self._post("validate", items)

    def verify(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self._post("verify", items)

    @property
    def pair(self) -> Any:
        pytest.skip("the fork-server processes are not visible through the HTTP API")

    @property
    def limits(self) -> Any:
        pytest.skip("the engine's limits live in the server process, out of a test's reach")


def over_the_text_cap(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) > MAX_TEXT
    if isinstance(value, dict):
        return any(over_the_text_cap(v) for v in value.values())
    if isinstance(value, list):
        return any(over_the_text_cap(v) for v in value)
    return False


@pytest.fixture(scope="session")
def engine() -> HttpEngine:
    return HttpEngine()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        defs = item._fixtureinfo.name2fixturedefs  # type: ignore[attr-defined]
        missing = [n for n in item.fixturenames if n not in defs and n not in BUILTIN_FIXTURES]  # type: ignore[attr-defined]
        if missing:
            item.add_marker(pytest.mark.skip(reason=f"needs in-process fixtures {missing}"))
