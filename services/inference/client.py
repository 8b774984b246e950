"""Typed client of the proposer / solver / inference services (the gateway's side).

Sync methods (``propose``, ``solve``, ...) and async ones with an ``a`` prefix (``apropose``,
``asolve``, ...) take and return the schemas of `services.inference.schemas`.
"""

from __future__ import annotations

from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from services.inference.schemas import (
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
    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = 1800.0) -> None:
        self.base_url = base_url.rstrip("/")
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

    def _post(self, path: str, body: BaseModel, out: type[T]) -> T:
        response = self._sync.post(path, json=body.model_dump(mode="json", exclude_none=True))
        _check(response)
        return out.model_validate(response.json())

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
        response = self._sync.get("/v1/weights")
        _check(response)
        return WeightsInfoOut.model_validate(response.json())

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
