"""What every service's HTTP layer shares: health, readiness, Prometheus metrics, bearer-token
auth for mutating routes, readable 4xx errors and a request-size cap."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

ReadyCheck = Callable[[], dict[str, Any]]


def _describe(errors: list[Any]) -> str:
    parts = []
    for err in errors:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def install_common(
    app: FastAPI,
    *,
    ready: ReadyCheck | None = None,
    max_body_bytes: int = 8 * 1024 * 1024,
) -> None:
    """Add /healthz, /readyz, /metrics, the validation-error format and the body-size cap.

    `ready` returns a dict with a boolean ``ready`` and any details (layers, versions, ...);
    /readyz answers 503 with the same dict when it is false.
    """

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    def readyz() -> JSONResponse:
        report = ready() if ready else {"ready": True}
        code = status.HTTP_200_OK if report.get("ready") else status.HTTP_503_SERVICE_UNAVAILABLE
        return JSONResponse(report, status_code=code)

    @app.get("/metrics", tags=["ops"])
    def metrics() -> Response:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        safe = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in errors]
        return JSONResponse(
            {"detail": _describe(errors), "errors": safe},
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )

    @app.middleware("http")
    async def _limit_body(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        length = request.headers.get("content-length")
        if length is not None:
            try:
                too_big = int(length) > max_body_bytes
            except ValueError:
                return JSONResponse({"detail": "invalid Content-Length header"}, status_code=400)
            if too_big:
                return JSONResponse(
                    {"detail": f"request body over {max_body_bytes} bytes"}, status_code=413
                )
        return await call_next(request)


_bearer = HTTPBearer(auto_error=False)


def bearer_token_dependency(expected: Callable[[], str]) -> Callable[..., None]:
    """A FastAPI dependency that answers 401 unless the request carries the expected token."""

    def check(credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
        if credentials is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing bearer token (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(credentials.credentials, expected()):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "invalid bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return check
