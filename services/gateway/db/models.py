"""SQLAlchemy 2.0 records. These are storage rows, not API schemas (see `azr/contracts/gateway.py`).

The schema itself is created by the Alembic migrations in `services/gateway/migrations`; keep
the two in step (a test compares them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

RUN_STATUSES = ("created", "running", "paused", "stopped", "finished", "failed")
# Statuses a task can have; the first three are "in the buffer" (sampled as references/solver tasks).
TASK_STATUSES = ("active", "seed", "injected", "quarantined", "evicted")
BUFFER_STATUSES = ("active", "seed", "injected")
TASK_SOURCES = ("proposed", "seed", "injected")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC; SQLite drops the zone, so it is put back on read."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON, datetime: UTCDateTime}


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="created", index=True)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    current_step: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Step(Base):
    """One finished (or in-progress) step of a run: whole-step metrics and phase timings."""

    __tablename__ = "steps"
    __table_args__ = (UniqueConstraint("run_id", "step", name="uq_steps_run_step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    timings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class StepMetric(Base):
    """Per step x task type x role: one row per group, so the API/dashboard can plot series."""

    __tablename__ = "step_metrics"
    __table_args__ = (
        UniqueConstraint("run_id", "step", "task_type", "role", name="uq_step_metrics_group"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    task_type: Mapped[str] = mapped_column(String(16))
    role: Mapped[str] = mapped_column(String(16))
    n: Mapped[int | None] = mapped_column(Integer, nullable=True)
    valid_rate: Mapped[float | None] = mapped_column(Float, nullable=True)
    solve_rate: Mapped[float | None] = mapped_column(Float, nullable=True)
    learnability: Mapped[float | None] = mapped_column(Float, nullable=True)
    reward_mean: Mapped[float | None] = mapped_column(Float, nullable=True)
    format_error_rate: Mapped[float | None] = mapped_column(Float, nullable=True)
    tokens: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    staleness: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Anything else the loop measures (reward-hacking signals, lengths, ...).
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class TaskRecord(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        UniqueConstraint("run_id", "task_type", "fingerprint", name="uq_tasks_fingerprint"),
        Index("ix_tasks_buffer", "run_id", "task_type", "status", "step"),
        Index("ix_tasks_family", "run_id", "task_type", "program_hash"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    task_type: Mapped[str] = mapped_column(String(16))
    program: Mapped[str] = mapped_column(Text)
    imports: Mapped[list[str]] = mapped_column(JSON, default=list)
    inputs: Mapped[list[str]] = mapped_column(JSON)
    outputs: Mapped[list[str]] = mapped_column(JSON)
    message: Mapped[str] = mapped_column(Text, default="")
    # Normalised hash of (type, program, inputs): the dedup key.
    fingerprint: Mapped[str] = mapped_column(String(64))
    # Normalised hash of the program alone: tasks sharing it form a "family" for the cap policy.
    program_hash: Mapped[str] = mapped_column(String(64))
    program_chars: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="active")
    status_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    source: Mapped[str] = mapped_column(String(16), default="proposed")
    step: Mapped[int] = mapped_column(Integer, default=0)
    proposer_weight_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    validation: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    solve_rate: Mapped[float | None] = mapped_column(Float, nullable=True)
    n_solves: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WeightVersion(Base):
    __tablename__ = "weight_versions"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    path: Mapped[str] = mapped_column(Text)
    checksum: Mapped[str] = mapped_column(String(128))
    run_id: Mapped[int | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL"), nullable=True, index=True
    )
    batch_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    loaded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class HeldOutTask(Base):
    """A validated base-model task kept apart as the in-distribution yardstick (seeding stage).

    A table of its own, so nothing that reads the buffers (`tasks`) can ever sample one; its
    programs are kept out of the buffers by `program_key` (the normalised program alone).
    """

    __tablename__ = "heldout_tasks"
    __table_args__ = (
        UniqueConstraint("run_id", "task_type", "fingerprint", name="uq_heldout_fingerprint"),
        Index("ix_heldout_program", "run_id", "program_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    task_type: Mapped[str] = mapped_column(String(16))
    program: Mapped[str] = mapped_column(Text)
    imports: Mapped[list[str]] = mapped_column(JSON, default=list)
    inputs: Mapped[list[str]] = mapped_column(JSON)
    outputs: Mapped[list[str]] = mapped_column(JSON)
    message: Mapped[str] = mapped_column(Text, default="")
    fingerprint: Mapped[str] = mapped_column(String(64))
    program_key: Mapped[str] = mapped_column(String(64))
    proposer_weight_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
