"""Typed clients of the executor API, for the gateway and the evaluation harness."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from services.executor.schemas import (
    RunItem,
    RunResult,
    ValidateItem,
    ValidateResult,
    VerifyItem,
    VerifyResult,
)


class ExecutorError(RuntimeError):
    """The executor answered with an error status; `status_code` and `detail` say which."""

    def __init__(self, status_code: int, detail: Any) -> None:
        super().__init__(f"executor answered {status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


def _items(items: Sequence[Any]) -> list[dict[str, Any]]:
    return [i.model_dump(exclude_none=True) if hasattr(i, "model_dump") else dict(i) for i in items]


def _results(response: httpx.Response) -> list[dict[str, Any]]:
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text
        raise ExecutorError(response.status_code, detail)
    results: list[dict[str, Any]] = response.json()["results"]
    return results


class ExecutorClient:
    """Sync client. Items may be the schema models or plain dicts."""

    def __init__(self, base_url: str, timeout_s: float = 660.0) -> None:
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s)

    def run(self, items: Sequence[RunItem | dict[str, Any]]) -> list[RunResult]:
        r = self._http.post("/v1/run", json={"items": _items(items)})
        return [RunResult.model_validate(x) for x in _results(r)]

    def validate(self, items: Sequence[ValidateItem | dict[str, Any]]) -> list[ValidateResult]:
        r = self._http.post("/v1/validate", json={"items": _items(items)})
        return [ValidateResult.model_validate(x) for x in _results(r)]

    def verify(self, items: Sequence[VerifyItem | dict[str, Any]]) -> list[VerifyResult]:
        r = self._http.post("/v1/verify", json={"items": _items(items)})
        return [VerifyResult.model_validate(x) for x in _results(r)]

    def ready(self) -> dict[str, Any]:
        body: dict[str, Any] = self._http.get("/readyz").json()
        return body

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ExecutorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncExecutorClient:
    """The same calls for asyncio callers."""

    def __init__(self, base_url: str, timeout_s: float = 660.0) -> None:
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout_s)

    async def run(self, items: Sequence[RunItem | dict[str, Any]]) -> list[RunResult]:
        r = await self._http.post("/v1/run", json={"items": _items(items)})
        return [RunResult.model_validate(x) for x in _results(r)]

    async def validate(
        self, items: Sequence[ValidateItem | dict[str, Any]]
    ) -> list[ValidateResult]:
        r = await self._http.post("/v1/validate", json={"items": _items(items)})
        return [ValidateResult.model_validate(x) for x in _results(r)]

    async def verify(self, items: Sequence[VerifyItem | dict[str, Any]]) -> list[VerifyResult]:
        r = await self._http.post("/v1/verify", json={"items": _items(items)})
        return [VerifyResult.model_validate(x) for x in _results(r)]

    async def ready(self) -> dict[str, Any]:
        body: dict[str, Any] = (await self._http.get("/readyz")).json()
        return body

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncExecutorClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
