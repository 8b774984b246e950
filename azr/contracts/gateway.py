"""Pydantic models of the public REST API (kept apart from the ORM rows in `db.models`)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from azr.core.tasks import TaskType

# PostgreSQL rejects NUL in text; refuse it at the edge so it is a 422, not a database error.
MAX_INT = 2**31 - 1


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]
DbInt = Annotated[int, Field(ge=0, le=MAX_INT)]

RunStatus = Literal["created", "running", "paused", "stopped", "finished", "failed"]


class TaskStatus(StrEnum):
    ACTIVE = "active"
    SEED = "seed"
    INJECTED = "injected"
    QUARANTINED = "quarantined"
    EVICTED = "evicted"


class TaskSource(StrEnum):
    PROPOSED = "proposed"
    SEED = "seed"
    INJECTED = "injected"


class ErrorOut(BaseModel):
    detail: str


# ------------------------------------------------------------------------------------ runs
class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[Text, Field(min_length=1, max_length=200)]
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description="overrides of the loop settings (names as in `LoopSettings`, e.g. batch_size)",
    )
    start: bool = Field(True, description="start the run at once (needs a run control)")


class RunOut(BaseModel):
    id: int
    name: str
    status: RunStatus
    settings: dict[str, Any]
    current_step: int
    error: str | None
    created_at: datetime
    updated_at: datetime


class RunList(BaseModel):
    items: list[RunOut]
    total: int
    limit: int
    offset: int


class StepOut(BaseModel):
    step: int
    metrics: dict[str, Any]
    timings: dict[str, Any]
    started_at: datetime | None
    finished_at: datetime | None


class GroupMetricOut(BaseModel):
    step: int
    task_type: str
    role: str
    n: int | None
    valid_rate: float | None
    solve_rate: float | None
    learnability: float | None
    reward_mean: float | None
    format_error_rate: float | None
    tokens: int | None
    staleness: float | None
    extra: dict[str, Any]


class RunMetrics(BaseModel):
    run_id: int
    steps: list[StepOut]
    groups: list[GroupMetricOut] = Field(description="one row per step x task type x role")
    buffers: dict[str, dict[str, int]] = Field(description="task counts per type and status")


# ------------------------------------------------------------------------------------ tasks
class TaskOut(BaseModel):
    id: int
    run_id: int
    task_type: TaskType
    program: str
    imports: list[str]
    inputs: list[str]
    outputs: list[str] = Field(description="gold outputs (repr) computed by the executor")
    message: str
    fingerprint: str
    status: TaskStatus
    status_reason: str | None
    source: TaskSource
    step: int
    proposer_weight_version: int | None
    validation: dict[str, Any]
    solve_rate: float | None
    n_solves: int
    created_at: datetime


class TaskList(BaseModel):
    items: list[TaskOut]
    total: int
    limit: int
    offset: int


class TaskInject(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: Annotated[int, Field(ge=1, le=MAX_INT)]
    task_type: TaskType
    program: Annotated[Text, Field(min_length=1, max_length=20000)]
    inputs: Annotated[
        list[Annotated[Text, Field(max_length=5000)]], Field(min_length=1, max_length=64)
    ] = Field(
        description="argument lists as Python source, e.g. \"'abc', 3\"; one for "
        "deduction/abduction, several for induction"
    )
    message: Annotated[Text, Field(max_length=2000)] | None = None
    step: DbInt | None = Field(None, description="default: the run's current step")


class QuarantineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[Text, Field(min_length=1, max_length=2000)]


# ------------------------------------------------------------------------------------ weights
class WeightVersionOut(BaseModel):
    version: int
    path: str
    checksum: str
    run_id: int | None
    batch_id: str | None
    created_at: datetime
    loaded_at: datetime | None


class WeightsCurrent(BaseModel):
    current: WeightVersionOut | None = Field(description="the version inference loaded last")
    latest: WeightVersionOut | None = Field(description="the newest version trained")


class WeightHistory(BaseModel):
    items: list[WeightVersionOut]
    total: int
    limit: int
    offset: int


class SwapIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Annotated[int, Field(ge=0, le=MAX_INT)]


class SwapOut(BaseModel):
    version: int
    result: dict[str, Any]
    weights: WeightVersionOut
