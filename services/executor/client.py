"""Typed clients of the executor API, for the gateway and the evaluation harness."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from azr.common.retry import RetryPolicy, request_with_retry
from azr.contracts.executor import (
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


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


class ExecutorClient:
    """Sync client. Items may be the schema models or plain dicts. `token`: the executor's
    service token (AZR_SERVICE_TOKEN), sent as a bearer token when set. With `retry`, a
    transport error or a 502/503/504 is retried (azr/common/retry.py; the calls are idempotent)
    and `ServiceUnavailable` names the executor once the attempts are spent."""

    def __init__(
        self,
        base_url: str,
        timeout_s: float = 660.0,
        token: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), timeout=timeout_s, headers=_headers(token)
        )
        self._retry = retry

    def _post(self, path: str, items: Sequence[Any]) -> list[dict[str, Any]]:
        body = {"items": _items(items)}

        def send() -> httpx.Response:
            return self._http.post(path, json=body)

        if self._retry is None:
            return _results(send())
        what = f"POST {path}"
        return _results(request_with_retry(send, service="executor", what=what, policy=self._retry))

    def run(self, items: Sequence[RunItem | dict[str, Any]]) -> list[RunResult]:
        return [RunResult.model_validate(x) for x in self._post("/v1/run", items)]

    def validate(self, items: Sequence[ValidateItem | dict[str, Any]]) -> list[ValidateResult]:
        return [ValidateResult.model_validate(x) for x in self._post("/v1/validate", items)]

    def verify(self, items: Sequence[VerifyItem | dict[str, Any]]) -> list[VerifyResult]:
        return [VerifyResult.model_validate(x) for x in self._post("/v1/verify", items)]

    def ready(self) -> dict[str, Any]:
        body: dict[str, Any] = self._http.get("/readyz").json()
        return body

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ExecutorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
