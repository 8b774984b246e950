"""Build the FastAPI app of an inference process: the role routers over one engine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, FastAPI

from azr.common.http import install_common, optional_bearer, set_fatal
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
    token: Callable[[], str | None] | str | None = None,
    checkpoint_root: Path | None = None,
    max_body_bytes: int | None = None,
    manage_engine: bool = True,
    wait_for_engine: bool = False,
    exit_on_fatal: bool = False,
) -> FastAPI:
    """`role` picks the routers: proposer, solver, or both (inference). With `manage_engine`
    the app starts the engine and closes it on shutdown. The start runs in the background
    unless `wait_for_engine`: a vLLM start takes minutes, and /healthz must answer meanwhile
    (/readyz says 503 until the engine is up, with the start-up error if it failed).

    `token`: the bearer token every data route (generate, propose, solve, POST weights) needs;
    None leaves them open (only for a loopback bind). `checkpoint_root`: the folder POST
    /v1/weights may load from (default: the settings' checkpoint root). `exit_on_fatal`: a
    failed engine start also ends the process (non-zero) so that it is restarted; /healthz
    answers 503 with the reason either way."""
    if checkpoint_root is None:
        from azr.settings import get_settings

        settings = get_settings()
        checkpoint_root = settings.inference.checkpoint_root or settings.checkpoint_dir
    engine: Engine = service.engine
    start_error: list[str] = []

    async def start() -> None:
        try:
            await engine.start()
            metrics.WEIGHT_VERSION.set(engine.version)
        except Exception as exc:
            log.exception("engine start failed")
            start_error.append(f"{type(exc).__name__}: {exc}")
            set_fatal(
                f"inference engine start failed: {start_error[-1]}",
                exit_code=1 if exit_on_fatal else None,
            )

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

    install_common(app, ready=ready, max_body_bytes=max_body_bytes)
    expected: Callable[[], str | None] = token if callable(token) else (lambda: token)
    auth = optional_bearer(expected)
    app.include_router(build_router(auth, Path(checkpoint_root)))
    if role in ("proposer", "inference"):
        from services.proposer.router import router as proposer_router

        app.include_router(proposer_router, dependencies=[Depends(auth)])
    if role in ("solver", "inference"):
        from services.solver.router import router as solver_router

        app.include_router(solver_router, dependencies=[Depends(auth)])
    return app
