"""FastAPI dependencies shared by the inference routers."""

from __future__ import annotations

from fastapi import HTTPException, Request, status

from services.inference.service import InferenceService


def get_service(request: Request) -> InferenceService:
    service: InferenceService = request.app.state.inference
    return service


def ready_service(request: Request) -> InferenceService:
    """The service, or 503 while its engine is starting (or failed to start)."""
    service = get_service(request)
    if not service.engine.ready:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "the engine is not ready yet; see /readyz"
        )
    return service
