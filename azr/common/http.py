"""What every service's HTTP layer shares: health, readiness, Prometheus metrics, bearer-token
auth, readable 4xx errors, a request-size cap that counts the bytes actually received, and the
rule that a service reachable beyond loopback needs a token."""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
import threading
from collections.abc import Callable, MutableMapping
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

ReadyCheck = Callable[[], dict[str, Any]]
Message = MutableMapping[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Any]

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024

log = logging.getLogger("azr.http")

# The process's fatal state: set once a start-up or background error leaves the service unable
# to work. /healthz answers 503 with the reason, so the liveness probe restarts the pod even
# where the exit below is not reached.
_fatal: list[str] = []
_fatal_lock = threading.Lock()


def fatal_reason() -> str | None:
    with _fatal_lock:
        return _fatal[0] if _fatal else None


def set_fatal(reason: str, *, exit_code: int | None = 1, grace_s: float = 2.0) -> None:
    """Record a fatal error; unless `exit_code` is None, end the process with it after
    `grace_s` (time for the log line and a probe to see the 503), so the supervisor or
    Kubernetes restarts it instead of it serving 200 with nothing behind."""
    with _fatal_lock:
        if not _fatal:
            _fatal.append(reason)
    log.critical("fatal: %s", reason)
    if exit_code is None:
        return
    timer = threading.Timer(grace_s, os._exit, args=(exit_code,))
    timer.daemon = True
    timer.start()


def clear_fatal() -> None:
    """For tests that exercise the flag in-process."""
    with _fatal_lock:
        _fatal.clear()


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` gets 413 before the app sees any of it.

    Content-Length is checked up front; a body without one (chunked transfer) is counted as its
    chunks arrive and refused as soon as the count passes the cap, so at most `max_bytes` of it
    are ever held and nothing (routing, auth, JSON parsing) runs on an oversized request. A body
    within the cap is handed on whole.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await _reply(send, 400, "invalid Content-Length header")
                return
            if declared > self.max_bytes:
                await _reply(send, 413, self._too_big())
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away; there is nobody to answer
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await _reply(send, 413, self._too_big())
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        whole: list[Message] = [
            {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        ]

        async def replay() -> Message:
            if whole:
                return whole.pop()
            message: Message = await receive()  # after the body: disconnects only
            return message

        await self.app(scope, replay, send)

    def _too_big(self) -> str:
        return f"request body over {self.max_bytes} bytes"


async def _reply(send: Send, status_code: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status_code,
            # the rest of the body is not read, so this connection cannot carry another request
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


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
    max_body_bytes: int | None = None,
) -> None:
    """Add /healthz, /readyz, /metrics, the validation-error format and the body-size cap
    (`max_body_bytes`; default: the `max_body_bytes` setting), outermost so that it runs before
    anything reads the body.

    `ready` returns a dict with a boolean ``ready`` and any details (layers, versions, ...);
    /readyz answers 503 with the same dict when it is false.
    """
    if max_body_bytes is None:
        from azr.settings import get_settings

        max_body_bytes = get_settings().max_body_bytes

    @app.get("/healthz", tags=["ops"], responses={503: {}})
    def healthz() -> JSONResponse:
        reason = fatal_reason()
        if reason is not None:
            return JSONResponse(
                {"status": "fatal", "reason": reason},
                status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            )
        return JSONResponse({"status": "ok"})

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

    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)


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


def optional_bearer(expected: Callable[[], str | None]) -> Callable[..., None]:
    """The token check when a token is configured, and none when it is not (a service that has
    no token refuses to bind beyond loopback; see `require_token_for_bind`)."""

    def check(credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
        token = expected()
        if token:
            bearer_token_dependency(lambda: token)(credentials)

    return check


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps a server reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


class InsecureBind(RuntimeError):
    """A service was asked to listen beyond loopback without a token on its data routes."""


def require_token_for_bind(service: str, host: str, token: str | None) -> None:
    """Refuse to serve data routes on a non-loopback address without a bearer token."""
    if not token and not is_loopback(host):
        raise InsecureBind(
            f"refusing to start the {service} on {host}: it is reachable beyond this machine and "
            "no service token is set. Set AZR_SERVICE_TOKEN (every client sends it as "
            "'Authorization: Bearer <token>'), or bind to 127.0.0.1"
        )
