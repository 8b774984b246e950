"""/v1/weights: the current version, the history, and swapping inference to a version."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status
from prometheus_client import Counter

from azr.contracts.gateway import (
    MAX_INT,
    SwapIn,
    SwapOut,
    WeightHistory,
    WeightsCurrent,
    WeightVersionOut,
)
from services.gateway.api.deps import AUTH_ERRORS, ERRORS, Auth, StoreDep, call_control, get_control
from services.gateway.db.models import WeightVersion

router = APIRouter(prefix="/weights", tags=["weights"])

SWAPS = Counter("azr_gateway_weight_swaps_total", "weight swaps requested through the API")


def weights_out(row: WeightVersion | None) -> WeightVersionOut | None:
    return None if row is None else WeightVersionOut.model_validate(row, from_attributes=True)


@router.get("/current")
def current_weights(store: StoreDep) -> WeightsCurrent:
    return WeightsCurrent(
        current=weights_out(store.current_weights()), latest=weights_out(store.latest_weights())
    )


@router.get("", responses=ERRORS)
def weight_history(
    store: StoreDep,
    run_id: Annotated[int | None, Query(ge=1, le=MAX_INT)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
) -> WeightHistory:
    """Every trained version, newest first, with when it was loaded."""
    rows, total = store.weight_history(run_id=run_id, limit=limit, offset=offset)
    items = [w for w in (weights_out(r) for r in rows) if w is not None]
    return WeightHistory(items=items, total=total, limit=limit, offset=offset)


@router.post("/swap", dependencies=[Auth], responses={409: {}, 503: {}, **AUTH_ERRORS})
def swap_weights(body: SwapIn, store: StoreDep, request: Request) -> SwapOut:
    """Load a recorded version into inference (e.g. roll back to an earlier checkpoint)."""
    if store.get_weight_version(body.version) is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"weight version {body.version} is not recorded"
        )
    control = get_control(request)
    result = call_control("weight swap", control.swap_weights, body.version)
    store.mark_loaded(body.version)
    SWAPS.inc()
    row = weights_out(store.get_weight_version(body.version))
    assert row is not None
    return SwapOut(version=body.version, result=dict(result or {}), weights=row)
