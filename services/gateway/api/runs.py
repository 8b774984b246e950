"""/v1/runs: create, list, get, pause, resume, stop, metrics."""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import ValidationError

from azr.contracts.gateway import (
    MAX_INT,
    GroupMetricOut,
    RunCreate,
    RunList,
    RunMetrics,
    RunOut,
    RunStatus,
    StepOut,
)
from azr.settings import LoopSettings
from services.gateway.api.deps import (
    AUTH_ERRORS,
    ERRORS,
    Auth,
    RunId,
    SettingsDep,
    StoreDep,
    call_control,
    get_control,
)
from services.gateway.db.models import Run
from services.gateway.store import TaskStore

router = APIRouter(prefix="/runs", tags=["runs"])

# Which states each action may leave from; the target state is written after the control agrees.
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "pause": (frozenset({"running"}), "paused"),
    "resume": (frozenset({"paused", "failed", "created"}), "running"),
    "stop": (frozenset({"created", "running", "paused", "failed"}), "stopped"),
}


def run_out(run: Run) -> RunOut:
    return RunOut.model_validate(run, from_attributes=True)


def load_run(store: TaskStore, run_id: int) -> Run:
    run = store.get_run(run_id)
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"run {run_id} not found")
    return run


# A run in one of these states owns the trainer's stream and the served weights: a second one
# would interleave its batches with the first's and break both staleness bounds.
ACTIVE = ("running", "paused")
_starting = threading.Lock()  # the check and the start of a run are one step


def refuse_second_run(store: TaskStore, run_id: int | None = None) -> None:
    """409 when another run is active (only one run trains the weights at a time)."""
    for state in ACTIVE:
        rows, _ = store.list_runs(status=state, limit=5)
        for other in rows:
            if other.id != run_id:
                raise HTTPException(
                    status.HTTP_409_CONFLICT,
                    f"run {other.id} ({other.name!r}) is {other.status}: one run trains at a "
                    f"time; stop it (POST /v1/runs/{other.id}/stop) or wait for it to finish",
                )


def validated_loop_settings(base: LoopSettings, overrides: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(overrides) - set(LoopSettings.model_fields))
    if unknown:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"unknown loop settings {unknown}; known: {sorted(LoopSettings.model_fields)}",
        )
    try:
        merged = LoopSettings.model_validate({**base.model_dump(), **overrides})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"invalid settings: {problems}"
        ) from exc
    return merged.model_dump(mode="json")


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Auth],
    responses={409: {}, **AUTH_ERRORS},
)
def create_run(body: RunCreate, store: StoreDep, settings: SettingsDep, request: Request) -> RunOut:
    """Create a run with the server's loop settings plus `settings` overrides; start it unless
    `start` is false."""
    loop = validated_loop_settings(settings.loop, body.settings)
    control = get_control(request) if body.start else None
    with _starting:
        if body.start:
            refuse_second_run(store)
        run_id = store.create_run(body.name, loop)
        if control is not None:
            call_control("start", control.start, run_id)
            store.set_run_status(run_id, "running")
    return run_out(load_run(store, run_id))


@router.get("", responses=ERRORS)
def list_runs(
    store: StoreDep,
    status_: Annotated[RunStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
) -> RunList:
    rows, total = store.list_runs(status=status_, limit=limit, offset=offset)
    return RunList(items=[run_out(r) for r in rows], total=total, limit=limit, offset=offset)


@router.get("/{run_id}", responses=ERRORS)
def get_run(run_id: RunId, store: StoreDep) -> RunOut:
    return run_out(load_run(store, run_id))


def _transition(action: str, run_id: int, store: TaskStore, request: Request) -> RunOut:
    run = load_run(store, run_id)
    allowed, target = TRANSITIONS[action]
    if run.status not in allowed:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"cannot {action} run {run_id}: it is {run.status} (allowed from {sorted(allowed)})",
        )
    with _starting:
        if action == "resume":
            refuse_second_run(store, run_id)
        control = get_control(request)
        start = run.status == "created" and action == "resume"
        call_control(action, getattr(control, "start" if start else action), run_id)
        store.set_run_status(run_id, target)
    return run_out(load_run(store, run_id))


@router.post("/{run_id}/pause", dependencies=[Auth], responses={409: {}, **AUTH_ERRORS})
def pause_run(run_id: RunId, store: StoreDep, request: Request) -> RunOut:
    """Pause after the step in progress."""
    return _transition("pause", run_id, store, request)


@router.post("/{run_id}/resume", dependencies=[Auth], responses={409: {}, **AUTH_ERRORS})
def resume_run(run_id: RunId, store: StoreDep, request: Request) -> RunOut:
    """Resume a paused or failed run (a created one is started)."""
    return _transition("resume", run_id, store, request)


@router.post("/{run_id}/stop", dependencies=[Auth], responses={409: {}, **AUTH_ERRORS})
def stop_run(run_id: RunId, store: StoreDep, request: Request) -> RunOut:
    """Stop for good (a stopped run cannot be resumed)."""
    return _transition("stop", run_id, store, request)


@router.get("/{run_id}/metrics", responses=ERRORS)
def run_metrics(
    run_id: RunId,
    store: StoreDep,
    step_min: Annotated[int | None, Query(ge=0, le=MAX_INT)] = None,
    step_max: Annotated[int | None, Query(ge=0, le=MAX_INT)] = None,
) -> RunMetrics:
    """Per-step metrics and timings, and one row per step x task type x role."""
    load_run(store, run_id)
    if step_min is not None and step_max is not None and step_min > step_max:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"step_min {step_min} > step_max {step_max}"
        )
    steps, groups = store.steps(run_id, step_min, step_max)
    return RunMetrics(
        run_id=run_id,
        steps=[StepOut.model_validate(s, from_attributes=True) for s in steps],
        groups=[GroupMetricOut.model_validate(g, from_attributes=True) for g in groups],
        buffers=store.buffer_sizes(run_id),
    )
