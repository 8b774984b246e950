"""Dependencies shared by the routers: the store, the run control, the token check, id types."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Path, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from azr.common.http import bearer_token_dependency
from azr.contracts.gateway import MAX_INT, ErrorOut
from azr.settings import Settings
from services.gateway.control import ControlError, RunControl
from services.gateway.store import TaskStore

log = logging.getLogger(__name__)
T = TypeVar("T")

_bearer = HTTPBearer(auto_error=False, description="the gateway's API token (AZR_API_TOKEN)")

# Ids are 32-bit in the database; a larger one cannot exist, so it is a 422, not a DB error.
RunId = Annotated[int, Path(ge=1, le=MAX_INT, description="run id")]
TaskId = Annotated[int, Path(ge=1, le=MAX_INT, description="task id")]

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "unknown id"},
    422: {"description": "invalid request (the detail names the field)"},
}
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "missing or invalid bearer token"},
    **ERRORS,
}


def get_store(request: Request) -> TaskStore:
    store: TaskStore = request.app.state.store
    return store


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def require_token(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
) -> None:
    bearer_token_dependency(lambda: request.app.state.settings.api_token)(credentials)


def get_control(request: Request) -> RunControl:
    control: RunControl | None = request.app.state.control
    if control is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "this gateway has no run control attached (read-only); start it with `azr serve gateway`",
        )
    return control


StoreDep = Annotated[TaskStore, Depends(get_store)]
ControlDep = Annotated[RunControl, Depends(get_control)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
Auth = Depends(require_token)


def call_control(action: str, fn: Callable[..., T], *args: Any) -> T:
    """Run a control call, mapping its failures to HTTP answers: a `ControlError` to its own
    status, anything else (an upstream service down or failing) to 503 with the reason."""
    try:
        return fn(*args)
    except ControlError as exc:
        raise HTTPException(exc.status_code, str(exc) or action) from exc
    except HTTPException:
        raise
    except Exception as exc:
        log.exception("run control failed during %s", action)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"{action} failed: {type(exc).__name__}: {exc}"
        ) from exc
