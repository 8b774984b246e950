"""The executor's HTTP API: a thin adapter that splits a batch into Celery tasks and gathers the
results. No program ever runs in this process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import redis
from celery import Celery, group
from celery.exceptions import TimeoutError as CeleryTimeout
from fastapi import Depends, FastAPI, HTTPException, status
from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from azr.common.http import install_common, optional_bearer
from azr.contracts.executor import (
    RunRequest,
    RunResponse,
    ValidateRequest,
    ValidateResponse,
    VerifyRequest,
    VerifyResponse,
)
from azr.settings import Settings, get_settings
from services.executor.celery_app import live_workers, make_celery
from services.executor.sandbox import missing_layers

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
    celery: Celery = make_celery(redis_url, cfg)
    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    _QUEUE_DEPTH.client, _QUEUE_DEPTH.queue = client, cfg.queue

    def ready() -> dict[str, Any]:
        try:
            workers = live_workers(client)
        except redis.RedisError as exc:
            return {"ready": False, "reason": f"redis unreachable: {exc}"}
        report: dict[str, Any] = {"ready": bool(workers), "workers": len(workers)}
        if workers:
            layers = next(iter(workers.values()))["layers"]
            report["layers"] = {
                name: ("active" if layer["active"] else f"unavailable: {layer['detail']}")
                for name, layer in layers.items()
            }
            report["layers"]["static_checks"] = "active"
            # fail closed: a missing layer is not ready unless a degraded sandbox is allowed
            missing = missing_layers(layers, cfg.runtime)
            if missing and not cfg.allow_degraded_sandbox:
                report["ready"] = False
                report["reason"] = f"isolation layers missing: {', '.join(missing)}"
        else:
            report["reason"] = (
                "no executor worker has registered (or none is alive; a worker whose sandbox "
                "lacks a layer refuses to start unless AZR_EXECUTOR__ALLOW_DEGRADED_SANDBOX)"
            )
        return report

    app = FastAPI(title="AZR executor", version="0.1.0")
    install_common(app, ready=ready, max_body_bytes=settings.max_body_bytes)
    # the data routes need the service token when one is set (see require_token_for_bind)
    auth = [Depends(optional_bearer(lambda: settings.service_token))]

    @app.get("/v1/sandbox", tags=["executor"])
    def sandbox() -> dict[str, Any]:
        """The isolation layers a live worker's fork-servers report, the runtime (native or
        runsc = gVisor) and which required layers are missing."""
        try:
            workers = live_workers(client)
        except redis.RedisError as exc:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, f"redis unreachable: {exc}"
            ) from None
        layers = next(iter(workers.values()))["layers"] if workers else {}
        return {
            "runtime": cfg.runtime,
            "workers": len(workers),
            "layers": layers,
            "missing": missing_layers(layers, cfg.runtime) if workers else [],
            "degraded_allowed": cfg.allow_degraded_sandbox,
        }

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
            # terminate: a chunk already running is stopped too, not only the queued ones
            result.revoke(terminate=True, signal="SIGTERM")
            raise HTTPException(
                status.HTTP_504_GATEWAY_TIMEOUT, "the executor workers did not answer in time"
            ) from None
        except Exception as exc:  # a chunk failed in its worker (over its budget, refused)
            result.revoke(terminate=True, signal="SIGTERM")
            raise HTTPException(
                status.HTTP_502_BAD_GATEWAY,
                f"an executor worker failed a chunk: {type(exc).__name__}: {exc}",
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

    @app.post("/v1/run", response_model=RunResponse, tags=["executor"], dependencies=auth)
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

    @app.post("/v1/validate", response_model=ValidateResponse, tags=["executor"], dependencies=auth)
    def validate(body: ValidateRequest) -> ValidateResponse:
        """Validate proposals: static checks, two calls per input, a second process with another
        hash seed; gold outputs come back in `outputs`."""
        check_programs([it.program for it in body.items])
        results = dispatch("validate", [it.model_dump() for it in body.items])
        for r in results:
            EXECUTIONS.labels("validate", r["status"]).inc()
        return ValidateResponse.model_validate({"results": results})

    @app.post("/v1/verify", response_model=VerifyResponse, tags=["executor"], dependencies=auth)
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
