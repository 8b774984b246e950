"""Routers of the public REST API (`/v1`)."""

from fastapi import APIRouter

from services.gateway.api import runs, tasks, weights


def v1_router() -> APIRouter:
    router = APIRouter(prefix="/v1")
    router.include_router(runs.router)
    router.include_router(tasks.router)
    router.include_router(weights.router)
    return router


__all__ = ["v1_router"]
