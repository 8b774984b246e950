"""Typed client of the proposer / solver / inference services (the gateway's side).

Sync methods (``propose``, ``solve``, ...) and async ones with an ``a`` prefix (``apropose``,
``asolve``, ...) take and return the schemas of `azr.contracts.inference`.
"""

from __future__ import annotations

from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from azr.common.retry import RetryPolicy, request_with_retry
from azr.contracts.inference import (
    GenerateRequest,
    GenerateResponse,
    ProposeRequest,
    ProposeResponse,
    SolveRequest,
    SolveResponse,
    WeightsInfoOut,
    WeightsLoadRequest,
)

T = TypeVar("T", bound=BaseModel)


class InferenceError(RuntimeError):
    """The service answered with an error status; `detail` is its message."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


def _check(response: httpx.Response) -> None:
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise InferenceError(response.status_code, str(detail))


class InferenceClient:
    """With `retry`, a transport error or a 502/503/504 is retried (azr/common/retry.py; every
    call is idempotent, a weight load of the loaded version included) and `ServiceUnavailable`
    names `service` once the attempts are spent."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = 1800.0,
        retry: RetryPolicy | None = None,
        service: str = "inference",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._retry, self.service = retry, service
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # Generations of long batches on a CPU take minutes; connecting should not.
        t = httpx.Timeout(timeout, connect=10.0)
        self._sync = httpx.Client(base_url=self.base_url, headers=headers, timeout=t)
        self._async: httpx.AsyncClient | None = None
        self._headers, self._timeout = headers, t

    # -- plumbing --------------------------------------------------------------------------
    def _aclient(self) -> httpx.AsyncClient:
        if self._async is None:
            self._async = httpx.AsyncClient(
                base_url=self.base_url, headers=self._headers, timeout=self._timeout
            )
        return self._async

    def _send(self, method: str, path: str, body: BaseModel | None = None) -> httpx.Response:
        payload = None if body is None else body.model_dump(mode="json", exclude_none=True)

        def send() -> httpx.Response:
            return self._sync.request(method, path, json=payload)

        if self._retry is None:
            response = send()
        else:
            what = f"{method} {path}"
            response = request_with_retry(send, service=self.service, what=what, policy=self._retry)
        _check(response)
        return response

    def _post(self, path: str, body: BaseModel, out: type[T]) -> T:
        return out.model_validate(self._send("POST", path, body).json())

    async def _apost(self, path: str, body: BaseModel, out: type[T]) -> T:
        response = await self._aclient().post(
            path, json=body.model_dump(mode="json", exclude_none=True)
        )
        _check(response)
        return out.model_validate(response.json())

    def close(self) -> None:
        self._sync.close()

    async def aclose(self) -> None:
        self._sync.close()
        if self._async is not None:
            await self._async.aclose()
            self._async = None

    def __enter__(self) -> InferenceClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- sync ------------------------------------------------------------------------------
    def propose(self, request: ProposeRequest) -> ProposeResponse:
        return self._post("/v1/propose", request, ProposeResponse)

    def solve(self, request: SolveRequest) -> SolveResponse:
        return self._post("/v1/solve", request, SolveResponse)

    def generate(self, request: GenerateRequest) -> GenerateResponse:
        return self._post("/v1/generate", request, GenerateResponse)

    def load_weights(self, version: int, path: str) -> WeightsInfoOut:
        return self._post(
            "/v1/weights", WeightsLoadRequest(version=version, path=path), WeightsInfoOut
        )

    def weights(self) -> WeightsInfoOut:
        return WeightsInfoOut.model_validate(self._send("GET", "/v1/weights").json())

    def ready(self) -> bool:
        try:
            return self._sync.get("/readyz", timeout=5.0).status_code == 200
        except httpx.HTTPError:
            return False

    # -- async -----------------------------------------------------------------------------
    async def apropose(self, request: ProposeRequest) -> ProposeResponse:
        return await self._apost("/v1/propose", request, ProposeResponse)

    async def asolve(self, request: SolveRequest) -> SolveResponse:
        return await self._apost("/v1/solve", request, SolveResponse)

    async def agenerate(self, request: GenerateRequest) -> GenerateResponse:
        return await self._apost("/v1/generate", request, GenerateResponse)

    async def aload_weights(self, version: int, path: str) -> WeightsInfoOut:
        return await self._apost(
            "/v1/weights", WeightsLoadRequest(version=version, path=path), WeightsInfoOut
        )

    async def aweights(self) -> WeightsInfoOut:
        response = await self._aclient().get("/v1/weights")
        _check(response)
        return WeightsInfoOut.model_validate(response.json())
