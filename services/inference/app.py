"""Build the FastAPI app of an inference process: the role routers over one engine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import FastAPI

from azr.common.http import bearer_token_dependency, install_common
from services.inference import metrics
from services.inference.engine import Engine
from services.inference.routes import build_router
from services.inference.service import InferenceService

log = logging.getLogger(__name__)

RoleName = Literal["proposer", "solver", "inference"]


def build_app(
    service: InferenceService,
    *,
    role: RoleName = "inference",
    api_token: Callable[[], str] | str = "azr-dev-token",
    manage_engine: bool = True,
    wait_for_engine: bool = False,
) -> FastAPI:
    """`role` picks the routers: proposer, solver, or both (inference). With `manage_engine`
    the app starts the engine and closes it on shutdown. The start runs in the background
    unless `wait_for_engine`: a vLLM start takes minutes, and /healthz must answer meanwhile
    (/readyz says 503 until the engine is up, with the start-up error if it failed)."""
    engine: Engine = service.engine
    start_error: list[str] = []

    async def start() -> None:
        try:
            await engine.start()
            metrics.WEIGHT_VERSION.set(engine.version)
        except Exception as exc:
            log.exception("engine start failed")
            start_error.append(f"{type(exc).__name__}: {exc}")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task: asyncio.Task[None] | None = None
        if manage_engine:
            if wait_for_engine:
                await engine.start()
            else:
                task = asyncio.create_task(start())
        metrics.WEIGHT_VERSION.set(engine.version)
        try:
            yield
        finally:
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if manage_engine:
                await engine.close()

    app = FastAPI(title=f"AZR {role}", version="0.1.0", lifespan=lifespan)
    app.state.inference = service

    def ready() -> dict[str, Any]:
        return {
            "ready": engine.ready,
            "engine": engine.name,
            "role": role,
            "version": engine.version,
            "checksum": engine.checksum,
            **({"error": start_error[-1]} if start_error else {}),
        }

    install_common(app, ready=ready)
    token: Callable[[], str] = api_token if callable(api_token) else (lambda: str(api_token))
    app.include_router(build_router(bearer_token_dependency(token)))
    if role in ("proposer", "inference"):
        from services.proposer.router import router as proposer_router

        app.include_router(proposer_router)
    if role in ("solver", "inference"):
        from services.solver.router import router as solver_router

        app.include_router(solver_router)
    return app
