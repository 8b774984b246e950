"""/v1/tasks: list with filters, get, inject (validated like a proposal), quarantine, export."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse, StreamingResponse
from prometheus_client import Counter

from azr.contracts.gateway import (
    MAX_INT,
    ErrorOut,
    QuarantineIn,
    TaskInject,
    TaskList,
    TaskOut,
    TaskSource,
    TaskStatus,
)
from azr.core.tasks import Task, TaskType
from services.gateway.api.deps import (
    AUTH_ERRORS,
    ERRORS,
    Auth,
    StoreDep,
    TaskId,
    call_control,
    get_control,
)
from services.gateway.api.runs import load_run
from services.gateway.db.models import TaskRecord
from services.gateway.store import NotFound, TaskFilter, TaskStore

router = APIRouter(prefix="/tasks", tags=["tasks"])

INJECTED = Counter(
    "azr_gateway_injected_tasks_total", "hand-written tasks submitted, by verdict", ["verdict"]
)


def task_out(rec: TaskRecord) -> TaskOut:
    return TaskOut.model_validate(rec, from_attributes=True)


def task_filter(
    run_id: Annotated[int | None, Query(ge=1, le=MAX_INT)] = None,
    task_type: TaskType | None = None,
    status_: Annotated[TaskStatus | None, Query(alias="status")] = None,
    source: TaskSource | None = None,
    step_min: Annotated[int | None, Query(ge=0, le=MAX_INT)] = None,
    step_max: Annotated[int | None, Query(ge=0, le=MAX_INT)] = None,
    q: Annotated[
        str | None,
        Query(max_length=200, pattern=r"^[^\x00]*$", description="text in program or message"),
    ] = None,
) -> TaskFilter:
    if step_min is not None and step_max is not None and step_min > step_max:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"step_min {step_min} > step_max {step_max}"
        )
    return TaskFilter(
        run_id=run_id,
        task_type=task_type.value if task_type else None,
        status=status_.value if status_ else None,
        source=source.value if source else None,
        step_min=step_min,
        step_max=step_max,
        text=q or None,
    )


# One definition of the filter query parameters, shared by listing and export.
FilterDep = Annotated[TaskFilter, Depends(task_filter)]


@router.get("", responses=ERRORS)
def list_tasks(
    store: StoreDep,
    flt: FilterDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
) -> TaskList:
    """Tasks, newest first, filtered by run, type, status, source, step range and text."""
    rows, total = store.list_tasks(flt, limit=limit, offset=offset)
    return TaskList(items=[task_out(r) for r in rows], total=total, limit=limit, offset=offset)


@router.get(
    "/export",
    responses={200: {"content": {"application/x-ndjson": {}}}, **ERRORS},
    response_class=StreamingResponse,
)
def export_tasks(store: StoreDep, flt: FilterDep) -> StreamingResponse:
    """Matching tasks as JSON Lines (one task per line, oldest first), streamed."""

    def lines() -> Iterator[str]:
        for rec in store.iter_tasks(flt):
            yield json.dumps(task_out(rec).model_dump(mode="json")) + "\n"

    return StreamingResponse(
        lines(),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": 'attachment; filename="tasks.jsonl"'},
    )


@router.get("/{task_id}", responses=ERRORS)
def get_task(task_id: TaskId, store: StoreDep) -> TaskOut:
    rec = store.get_task(task_id)
    if rec is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"task {task_id} not found")
    return task_out(rec)


def _reject(detail: str, verdict: str, **extra: object) -> JSONResponse:
    INJECTED.labels(verdict=verdict).inc()
    return JSONResponse(
        {"detail": detail, **extra}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TaskOut,
    dependencies=[Auth],
    responses={409: {"model": ErrorOut, "description": "duplicate task"}, **AUTH_ERRORS},
)
def inject_task(body: TaskInject, store: StoreDep, request: Request) -> TaskOut | JSONResponse:
    """Add a hand-written task. It is validated by the executor exactly like a proposal; the
    stored task carries the gold outputs the executor computed."""
    run = load_run(store, body.run_id)
    if body.task_type != TaskType.INDUCTION and len(body.inputs) != 1:
        return _reject(
            f"a {body.task_type.value} task takes exactly one input, got {len(body.inputs)}",
            "bad_request",
        )
    control = get_control(request)
    result = call_control(
        "validation",
        control.validate_task,
        body.task_type.value,
        body.program,
        list(body.inputs),
        body.message,
    )
    if not result.get("valid"):
        reason = result.get("reason") or result.get("status") or "rejected by the executor"
        return _reject(
            f"invalid task: {reason}",
            "invalid",
            status=result.get("status"),
            reason=result.get("reason"),
        )
    outputs = [str(o) for o in result.get("outputs") or []]
    if len(outputs) != len(body.inputs):
        raise HTTPException(
            status.HTTP_502_BAD_GATEWAY,
            f"executor returned {len(outputs)} outputs for {len(body.inputs)} inputs",
        )
    task = Task(
        task_type=body.task_type,
        program=body.program,
        inputs=tuple(body.inputs),
        outputs=tuple(outputs),
        message=body.message or "",
    )
    step = body.step if body.step is not None else run.current_step
    task_id, duplicate = store.add_task(
        run.id, task, step=step, proposer_version=None, validation=result, source="injected"
    )
    if duplicate:
        INJECTED.labels(verdict="duplicate").inc()
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"duplicate of task {task_id} (same normalised program and inputs)",
        )
    assert task_id is not None  # injected tasks are never evicted
    INJECTED.labels(verdict="stored").inc()
    return task_out(_load(store, task_id))


def _load(store: TaskStore, task_id: int) -> TaskRecord:
    rec = store.get_task(task_id)
    if rec is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"task {task_id} not found")
    return rec


@router.post("/{task_id}/quarantine", dependencies=[Auth], responses=AUTH_ERRORS)
def quarantine_task(task_id: TaskId, body: QuarantineIn, store: StoreDep) -> TaskOut:
    """Take a task out of its buffer (it is no longer sampled); the record stays."""
    try:
        return task_out(store.quarantine(task_id, body.reason))
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
