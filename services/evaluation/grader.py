"""Grading through the executor service: every answer runs in its sandbox, never here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.executor.client import ExecutorClient

from .grading import GradeRequest, run_result_correct


@dataclass(frozen=True)
class Verdict:
    correct: bool
    status: str
    reason: str | None = None


class ExecutorGrader:
    """Sends grade requests through the executor's client (`/v1/verify`, `/v1/run`) in
    batches, preserving order."""

    def __init__(
        self,
        url: str,
        *,
        batch_size: int = 128,
        timeout_s: float = 600.0,
        token: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.batch_size = batch_size
        self._client = ExecutorClient(self.url, timeout_s=timeout_s, token=token)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ExecutorGrader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(self, route: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        call = self._client.verify if route == "verify" else self._client.run
        results = [r.model_dump() for r in call(items)]
        if len(results) != len(items):
            raise RuntimeError(f"executor returned {len(results)} results for {len(items)} items")
        return results

    def grade(self, requests: Sequence[GradeRequest]) -> list[Verdict]:
        verdicts: list[Verdict | None] = [None] * len(requests)
        for route in ("verify", "run"):
            idx = [i for i, r in enumerate(requests) if r.route == route]
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start : start + self.batch_size]
                results = self._post(route, [requests[i].item for i in chunk])
                for i, res in zip(chunk, results, strict=True):
                    verdicts[i] = _verdict(route, res)
        missing = [i for i, v in enumerate(verdicts) if v is None]
        if missing:
            raise ValueError(f"unknown executor route for requests {missing}")
        return [v for v in verdicts if v is not None]


def _verdict(route: str, res: dict[str, Any]) -> Verdict:
    status = str(res.get("status", "?"))
    if route == "verify":
        return Verdict(bool(res.get("correct")), status, res.get("reason"))
    correct = run_result_correct(res)
    reason = res.get("error")
    if status == "ok" and not correct:
        reason = f"tests returned {res.get('output')!r}"
    return Verdict(correct, status, reason)
