"""Several inference replicas behind the loop: requests spread round-robin over the replicas in
rotation, and a weight swap is a barrier.

The rules that keep a step's samples on one version:
- `load_all(v)` posts v to every replica (those out of rotation too, so a repaired one rejoins)
  and returns only when each has answered; the orchestrator calls it before the step's first
  request, so no request of step t+1 goes out before every replica in rotation serves v.
- A replica that fails to load v leaves the rotation; requests never reach it until a later
  swap succeeds on it.
- Every answer names the version that produced it; an answer from another version (a replica
  restarted on its start-up weights behind our back) takes that replica out of rotation and the
  request is sent again to another one, so old weights are never served silently.
"""

from __future__ import annotations

import itertools
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

log = logging.getLogger("azr.loop")


class NoReplica(RuntimeError):
    """No inference replica is in rotation (all failed to load or to answer)."""


@dataclass
class Replica:
    url: str
    client: httpx.Client
    in_rotation: bool = True
    version: int | None = None
    reason: str | None = None  # why it left the rotation
    requests: int = 0
    failures: list[str] = field(default_factory=list)


def served_versions(data: Any) -> set[int]:
    """Every weight version named in an answer (each sample carries the one that made it)."""
    found: set[int] = set()
    if isinstance(data, dict):
        for key, value in data.items():
            if key in ("version", "weight_version") and isinstance(value, int):
                found.add(value)
            else:
                found |= served_versions(value)
    elif isinstance(data, list):
        for item in data:
            found |= served_versions(item)
    return found


def _error(resp: httpx.Response) -> str | None:
    if resp.status_code >= 400:
        return f"answered {resp.status_code}: {resp.text[:300]}"
    return None


class ReplicaSet:
    def __init__(
        self, urls: list[str], headers: dict[str, str], timeout_s: float, rounds: int = 4
    ) -> None:
        if not urls:
            raise ValueError("a replica set needs at least one URL")
        timeout = httpx.Timeout(timeout_s, connect=10.0)
        self.replicas = [
            Replica(u.rstrip("/"), httpx.Client(base_url=u, timeout=timeout, headers=headers))
            for u in urls
        ]
        self.version: int | None = None  # the version every replica in rotation serves
        self.rounds = rounds  # tries of a request when no replica is left in rotation
        self._lock = threading.Lock()
        self._turn = itertools.count()
        self._pool = ThreadPoolExecutor(max_workers=len(urls), thread_name_prefix="azr-replica")

    # ------------------------------------------------------------------ rotation
    def active(self) -> list[Replica]:
        with self._lock:
            return [r for r in self.replicas if r.in_rotation]

    def take_out(self, replica: Replica, reason: str) -> None:
        with self._lock:
            if replica.in_rotation:
                log.error("inference replica %s out of rotation: %s", replica.url, reason)
            replica.in_rotation, replica.reason = False, reason
            replica.failures = [*replica.failures[-9:], reason]

    def _pick(self, exclude: set[str]) -> Replica:
        candidates = [r for r in self.active() if r.url not in exclude]
        if not candidates:
            raise NoReplica(f"no inference replica in rotation ({self.describe()})")
        return candidates[next(self._turn) % len(candidates)]

    def describe(self) -> str:
        return "; ".join(
            f"{r.url}: {'in' if r.in_rotation else 'out'} v{r.version} {r.reason or ''}".strip()
            for r in self.replicas
        )

    def status(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {
                    "url": r.url,
                    "in_rotation": r.in_rotation,
                    "version": r.version,
                    "reason": r.reason,
                    "requests": r.requests,
                }
                for r in self.replicas
            ]

    # ------------------------------------------------------------------ requests
    def post(self, path: str, body: dict[str, Any]) -> Any:
        """`_post_once`; when it runs out of replicas (all answered 5xx or did not answer),
        wait with backoff, let back those that serve the rotation's version again (a 504 or a
        restart that came back on the same weights) and try again, `rounds` times in all."""
        retrying = Retrying(
            stop=stop_after_attempt(max(1, self.rounds)),
            wait=wait_exponential_jitter(multiplier=0.5, max=8.0),
            retry=retry_if_exception_type(NoReplica),
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    self.rejoin()
                return self._post_once(path, body)
        raise NoReplica(f"no inference replica in rotation ({self.describe()})")  # unreachable

    def rejoin(self) -> int:
        """Put back into rotation every replica out of it that answers and serves the
        rotation's version; returns how many came back."""
        back = 0
        for replica in self.replicas:
            if replica.in_rotation or self.version is None:
                continue
            try:
                resp = replica.client.get("/v1/weights")
            except httpx.HTTPError:
                continue
            if resp.status_code == 200 and resp.json().get("version") == self.version:
                with self._lock:
                    replica.in_rotation, replica.reason = True, None
                log.warning("inference replica %s back in rotation", replica.url)
                back += 1
        return back

    def _post_once(self, path: str, body: dict[str, Any]) -> Any:
        """One request on one replica in rotation; on a transport error, an error status or an
        answer from another version, that replica leaves the rotation and the next one is
        tried. A 4xx about the request itself is the caller's (raised, replica kept)."""
        tried: set[str] = set()
        while True:
            replica = self._pick(tried)
            tried.add(replica.url)
            with self._lock:
                replica.requests += 1
            try:
                resp = replica.client.post(path, json=body)
            except httpx.HTTPError as exc:
                self.take_out(replica, f"{path}: {type(exc).__name__}: {exc}")
                continue
            if 400 <= resp.status_code < 500 and resp.status_code not in (408, 429):
                raise RequestRejected(
                    f"{replica.url}{path} answered {resp.status_code}: {resp.text[:500]}"
                )
            problem = _error(resp)
            if problem:
                self.take_out(replica, f"{path} {problem}")
                continue
            data = resp.json()
            wrong = served_versions(data) - {self.version}
            if self.version is not None and wrong:
                self.take_out(
                    replica, f"serves version {min(wrong)}, the rotation serves {self.version}"
                )
                continue
            return data

    def current_version(self) -> int:
        """The version the replicas in rotation serve. Replicas that disagree with the newest
        one leave the rotation (a swap brings them back)."""
        found: dict[str, int] = {}
        for replica in self.active():
            try:
                resp = replica.client.get("/v1/weights")
            except httpx.HTTPError as exc:
                self.take_out(replica, f"GET /v1/weights: {type(exc).__name__}: {exc}")
                continue
            problem = _error(resp)
            if problem:
                self.take_out(replica, f"GET /v1/weights {problem}")
                continue
            found[replica.url] = int(resp.json().get("version", 0))
            replica.version = found[replica.url]
        if not found:
            raise NoReplica(f"no inference replica answered ({self.describe()})")
        newest = max(found.values())
        for replica in self.active():
            if found.get(replica.url, newest) != newest:
                self.take_out(replica, f"serves version {found[replica.url]}, others {newest}")
        self.version = newest
        return newest

    def load_all(self, version: int, path: str) -> dict[str, Any]:
        """The barrier: every replica loads `version`; returns when all have answered. Those
        that fail leave the rotation; at least one must succeed."""
        body = {"version": version, "path": path}

        def one(replica: Replica) -> tuple[Replica, dict[str, Any] | None, str | None]:
            try:
                resp = replica.client.post("/v1/weights", json=body)
            except httpx.HTTPError as exc:
                return replica, None, f"{type(exc).__name__}: {exc}"
            problem = _error(resp)
            return replica, (None if problem else resp.json()), problem

        results = list(self._pool.map(one, self.replicas))
        loaded: dict[str, Any] | None = None
        for replica, info, problem in results:
            if problem is not None:
                self.take_out(replica, f"loading version {version} failed: {problem}")
                continue
            with self._lock:
                replica.in_rotation, replica.reason, replica.version = True, None, version
            loaded = loaded or info
        if loaded is None:
            self.version = None
            raise NoReplica(f"no replica loaded version {version} ({self.describe()})")
        self.version = version
        return {**loaded, "replicas": self.status()}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        for r in self.replicas:
            r.client.close()


class RequestRejected(RuntimeError):
    """A replica refused the request itself (4xx): retrying elsewhere would not help."""
