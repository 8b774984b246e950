"""The trainer's HTTP API: health, readiness, metrics and /v1/status (read-only)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from azr.common.http import install_common
from services.trainer.service import TrainerService


class Backlog(BaseModel):
    pending: int
    undelivered: int
    total: int


class TrainerStatus(BaseModel):
    ready: bool
    phase: str
    version: int
    updates: int
    mode: str
    backlog: Backlog
    current: dict[str, Any] | None
    last_step: dict[str, Any] | None
    counts: dict[str, int]
    error: str | None
    redis_memory: float | None = None


def create_app(service: TrainerService) -> FastAPI:
    app = FastAPI(title="AZR trainer", version="1")

    def ready() -> dict[str, Any]:
        with service.lock:
            return {
                "ready": service.ready,
                "phase": service.phase,
                "version": service.state.version,
            }

    install_common(app, ready=ready, max_body_bytes=service.settings.max_body_bytes)

    @app.get("/v1/status", response_model=TrainerStatus, tags=["trainer"])
    def status() -> dict[str, Any]:
        """Current version, backlog of reward batches, the batch in progress and the last step."""
        return service.status()

    return app
