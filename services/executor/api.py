"""The executor's HTTP API: a thin adapter that splits a batch into Celery tasks and gathers the
results. No program ever runs in this process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import redis
from celery import Celery, group
from celery.exceptions import TimeoutError as CeleryTimeout
from fastapi import FastAPI, HTTPException, status
from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from azr.common.http import install_common
from azr.settings import Settings, get_settings
from services.executor.celery_app import live_workers, make_celery
from services.executor.schemas import (
    RunRequest,
    RunResponse,
    ValidateRequest,
    ValidateResponse,
    VerifyRequest,
    VerifyResponse,
)

EXECUTIONS = Counter(
    "azr_executor_executions", "Items executed, by endpoint and result status", ["kind", "status"]
)
ITEM_LATENCY = Histogram(
    "azr_executor_item_seconds",
    "Sandbox time of one /v1/run item",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5, 10, 30),
)
REQUEST_LATENCY = Histogram(
    "azr_executor_request_seconds", "End-to-end batch latency by endpoint", ["kind"]
)


class _QueueDepth(Collector):
    """Reads the broker queue length at scrape time (the autoscaling signal)."""

    def __init__(self) -> None:
        self.client: redis.Redis | None = None
        self.queue = "azr-executor"

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "azr_executor_queue_depth", "Batches waiting in the broker queue", labels=["queue"]
        )
        if self.client is not None:
            try:
                family.add_metric([self.queue], float(self.client.llen(self.queue)))
            except redis.RedisError:
                pass
        yield family


_QUEUE_DEPTH = _QueueDepth()
REGISTRY.register(_QUEUE_DEPTH)


def create_app(redis_url: str, settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    cfg = settings.executor
    celery: Celery = make_celery(redis_url)
    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    _QUEUE_DEPTH.client, _QUEUE_DEPTH.queue = client, cfg.queue

    def ready() -> dict[str, Any]:
        try:
            workers = live_workers(client)
        except redis.RedisError as exc:
            return {"ready": False, "reason": f"redis unreachable: {exc}"}
        report: dict[str, Any] = {"ready": bool(workers), "workers": len(workers)}
        if workers:
            report["layers"] = {
                name: ("active" if layer["active"] else f"unavailable: {layer['detail']}")
                for name, layer in next(iter(workers.values()))["layers"].items()
            }
            report["layers"]["static_checks"] = "active"
        else:
            report["reason"] = "no executor worker has registered (or none is alive)"
        return report

    app = FastAPI(title="AZR executor", version="0.1.0")
    install_common(app, ready=ready)

    def dispatch(kind: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if len(items) > cfg.max_batch_items:
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE,
                f"batch of {len(items)} items is over the limit of {cfg.max_batch_items}",
            )
        size = max(1, cfg.chunk_size)
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        started = time.monotonic()
        job = group(celery.signature(f"executor.{kind}", args=[chunk]) for chunk in chunks)
        result = job.apply_async(queue=cfg.queue)
        try:
            parts = result.get(timeout=cfg.request_timeout_s, propagate=True)
        except CeleryTimeout:
            result.revoke()
            raise HTTPException(
                status.HTTP_504_GATEWAY_TIMEOUT, "the executor workers did not answer in time"
            ) from None
        finally:
            result.forget()
        REQUEST_LATENCY.labels(kind).observe(time.monotonic() - started)
        return [r for part in parts for r in part]

    def check_programs(programs: list[str]) -> None:
        for i, program in enumerate(programs):
            if len(program) > cfg.max_program_chars:
                raise HTTPException(
                    status.HTTP_413_CONTENT_TOO_LARGE,
                    f"items[{i}].program is over {cfg.max_program_chars} characters",
                )

    @app.post("/v1/run", response_model=RunResponse, tags=["executor"])
    def run(body: RunRequest) -> RunResponse:
        """Run programs with the runtime sandbox only (no static checks): `output` is
        `repr(f(*args))` of the argument text `input`."""
        check_programs([it.program for it in body.items])
        for i, it in enumerate(body.items):
            if it.timeout_s is not None and it.timeout_s > cfg.max_timeout_s:
                raise HTTPException(
                    status.HTTP_422_UNPROCESSABLE_CONTENT,
                    f"items[{i}].timeout_s is over the limit of {cfg.max_timeout_s} s",
                )
        results = dispatch("run", [it.model_dump() for it in body.items])
        for r in results:
            EXECUTIONS.labels("run", r["status"]).inc()
            ITEM_LATENCY.observe(r["duration_ms"] / 1000.0)
        return RunResponse.model_validate({"results": results})

    @app.post("/v1/validate", response_model=ValidateResponse, tags=["executor"])
    def validate(body: ValidateRequest) -> ValidateResponse:
        """Validate proposals: static checks, two calls per input, a second process with another
        hash seed; gold outputs come back in `outputs`."""
        check_programs([it.program for it in body.items])
        results = dispatch("validate", [it.model_dump() for it in body.items])
        for r in results:
            EXECUTIONS.labels("validate", r["status"]).inc()
        return ValidateResponse.model_validate({"results": results})

    @app.post("/v1/verify", response_model=VerifyResponse, tags=["executor"])
    def verify(body: VerifyRequest) -> VerifyResponse:
        """Verify answers: deduction (value equality of literals), abduction (re-execution),
        induction (every hidden pair must be reproduced)."""
        check_programs([it.program for it in body.items])
        items = [it.model_dump() for it in body.items]
        results = dispatch("verify", items)
        for r in results:
            EXECUTIONS.labels("verify", r["status"]).inc()
        return VerifyResponse.model_validate({"results": results})

    return app
