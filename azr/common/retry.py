"""Retries with backoff for idempotent calls between services (tenacity).

Only calls that can be repeated without harm go through here: generation (sampling has no side
effect), the executor's validate/verify, weight loads (loading the same version twice is a
no-op) and reads. A call is retried on a transport error (refused connection, reset, timeout)
and on 502/503/504 (a proxy, or a service restarting or overloaded); any other answer is the
caller's to judge. After the last attempt the call fails with `ServiceUnavailable`, whose
message names the service, the route and the last cause.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import httpx
import redis
from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

log = logging.getLogger("azr.retry")

RETRY_STATUSES = frozenset({502, 503, 504})


class ServiceUnavailable(RuntimeError):
    """A service did not answer usefully after every attempt."""


class TransientStatus(Exception):
    """A 502/503/504 answer: worth another attempt."""

    def __init__(self, status_code: int, text: str) -> None:
        super().__init__(f"HTTP {status_code}: {text[:300]}")
        self.status_code = status_code


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    initial_wait_s: float = 0.5
    max_wait_s: float = 8.0


DEFAULT_POLICY = RetryPolicy()


def _cause(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    if isinstance(exc, TransientStatus):
        return str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def request_with_retry(
    send: Callable[[], httpx.Response],
    *,
    service: str,
    what: str,
    policy: RetryPolicy = DEFAULT_POLICY,
) -> httpx.Response:
    """Call `send` until it answers with something other than 502/503/504 or a transport
    error, at most `policy.attempts` times, with exponential backoff and jitter between."""

    def once() -> httpx.Response:
        resp = send()
        if resp.status_code in RETRY_STATUSES:
            raise TransientStatus(resp.status_code, resp.text)
        return resp

    def note(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "%s %s: attempt %d failed (%s); retrying",
            service,
            what,
            state.attempt_number,
            _cause(exc),
        )

    retrying = Retrying(
        stop=stop_after_attempt(max(1, policy.attempts)),
        wait=wait_exponential_jitter(multiplier=policy.initial_wait_s, max=policy.max_wait_s),
        retry=retry_if_exception_type((httpx.TransportError, TransientStatus)),
        before_sleep=note,
    )
    try:
        return retrying(once)
    except RetryError as exc:
        last = exc.last_attempt.exception()
        raise ServiceUnavailable(
            f"{service} {what} failed after {policy.attempts} attempts: {_cause(last)}"
        ) from last


F = TypeVar("F", bound=Callable[..., Any])


def redis_retry(fn: F) -> F:
    """Retry an idempotent Redis call through a short outage (a restart, a failover): 5
    attempts over about 10 s, then the connection error itself."""
    wrapped = retry(
        retry=retry_if_exception_type((redis.ConnectionError, redis.TimeoutError)),
        stop=stop_after_attempt(5),
        wait=wait_exponential_jitter(multiplier=0.5, max=5.0),
        reraise=True,
    )(fn)
    return cast(F, wrapped)
