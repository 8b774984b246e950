"""The gateway's FastAPI application: the public REST API, the dashboard and the ops routes."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from sqlalchemy import text

from azr.common.http import install_common
from azr.settings import Settings, get_settings
from services.gateway.api import v1_router
from services.gateway.control import RunControl
from services.gateway.dashboard import dashboard_router
from services.gateway.store import TaskStore

DESCRIPTION = """Absolute Zero self-play: runs, task buffers and weight versions.

Mutating routes need `Authorization: Bearer <AZR_API_TOKEN>`. The dashboard is at `/`."""


def create_app(
    settings: Settings | None = None,
    control: RunControl | None = None,
    *,
    store: TaskStore | None = None,
) -> FastAPI:
    """Build the app. The database is migrated to head here (idempotent), unless a ready `store`
    is passed (the loop's runner and the API then share it). Without a `control` the API is
    read-only for runs/weights/injection (503 on those routes)."""
    settings = settings or get_settings()
    if store is None:
        store = TaskStore.from_settings(settings)
    app = FastAPI(title="AZR gateway", version="0.1.0", description=DESCRIPTION)
    app.state.settings = settings
    app.state.store = store
    app.state.control = control

    def ready() -> dict[str, Any]:
        try:
            with store.engine.connect() as conn:
                conn.execute(text("select 1"))
        except Exception as exc:
            return {"ready": False, "database": f"{type(exc).__name__}: {exc}"}
        return {"ready": True, "database": "ok", "control": control is not None}

    install_common(app, ready=ready, max_body_bytes=settings.max_body_bytes)
    app.include_router(v1_router())
    app.include_router(dashboard_router)
    return app
