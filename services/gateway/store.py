"""Task buffers and run history over SQLAlchemy: what the loop and the API read and write.

Every method opens its own short transaction, so one `TaskStore` can be shared by the loop's
threads and the API. Methods a crash-restart could replay are idempotent: `add_task`/`seed`
deduplicate by fingerprint, `record_step` and `record_weight_version` upsert, status setters
overwrite.

Buffer cap policy (`loop.buffer_cap` per run and task type; the reference keeps the FIRST N
entries, so a full buffer never changes again). Here, when a buffer holds more than the cap,
proposed tasks are evicted (status ``evicted``; the row, its lineage and its fingerprint stay, so
an evicted task is not re-added) in this order:
  1. from the largest *program family* first: tasks whose programs normalise to the same hash
     (the same program with other inputs) are the least diverse, so they go first;
  2. within a family, and between families of equal size, the oldest step first (keep recent).
Seed and injected tasks are never evicted. With all programs distinct this is plain FIFO.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from azr.core.dedup import task_fingerprint
from azr.core.tasks import (
    IDENTITY_INDUCTION_SEED,
    IDENTITY_SEED,
    Task,
    TaskType,
)
from services.gateway.db.models import (
    BUFFER_STATUSES,
    RUN_STATUSES,
    TASK_SOURCES,
    Run,
    Step,
    StepMetric,
    TaskRecord,
    WeightVersion,
    utcnow,
)
from services.gateway.db.session import make_engine, make_sessionmaker, migrate

# Columns of `step_metrics`; other keys of a group's metrics dict go to its `extra` JSON.
GROUP_METRIC_COLUMNS = (
    "n",
    "valid_rate",
    "solve_rate",
    "learnability",
    "reward_mean",
    "format_error_rate",
    "tokens",
    "staleness",
)


class NotFound(LookupError):
    """No row with that id."""


@dataclasses.dataclass(frozen=True)
class TaskFilter:
    """Filters shared by the task list, the export and the CLI."""

    run_id: int | None = None
    task_type: str | None = None
    status: str | None = None
    source: str | None = None
    step_min: int | None = None
    step_max: int | None = None
    text: str | None = None

    def apply(self, query: Select[Any]) -> Select[Any]:
        t = TaskRecord
        if self.run_id is not None:
            query = query.where(t.run_id == self.run_id)
        if self.task_type is not None:
            query = query.where(t.task_type == self.task_type)
        if self.status is not None:
            query = query.where(t.status == self.status)
        if self.source is not None:
            query = query.where(t.source == self.source)
        if self.step_min is not None:
            query = query.where(t.step >= self.step_min)
        if self.step_max is not None:
            query = query.where(t.step <= self.step_max)
        if self.text:
            query = query.where(
                t.program.icontains(self.text, autoescape=True)
                | t.message.icontains(self.text, autoescape=True)
            )
        return query


def record_to_task(rec: TaskRecord) -> Task:
    return Task(
        task_type=TaskType(rec.task_type),
        program=rec.program,
        inputs=tuple(rec.inputs),
        outputs=tuple(rec.outputs),
        message=rec.message or "",
        imports=tuple(rec.imports or ()),
    )


def program_hash(task_type: str, program: str) -> str:
    """The family key: the normalised program without inputs (type kept apart per buffer)."""
    return task_fingerprint(task_type, program, [])


class TaskStore:
    def __init__(
        self,
        sessions: sessionmaker[Session] | Engine | str,
        *,
        buffer_cap: int = 16384,
        migrate_schema: bool = False,
    ) -> None:
        if isinstance(sessions, str):
            sessions = make_engine(sessions)
        if isinstance(sessions, Engine):
            if migrate_schema:
                migrate(sessions)
            sessions = make_sessionmaker(sessions)
        self._sessions = sessions
        self.buffer_cap = buffer_cap

    @classmethod
    def from_settings(cls, settings: Any) -> TaskStore:
        """Engine for `settings.sqlalchemy_url`, migrated to head."""
        return cls(
            make_engine(settings.sqlalchemy_url),
            buffer_cap=settings.loop.buffer_cap,
            migrate_schema=True,
        )

    @property
    def sessions(self) -> sessionmaker[Session]:
        return self._sessions

    @property
    def engine(self) -> Engine:
        bind = self._sessions.kw["bind"]
        assert isinstance(bind, Engine)
        return bind

    # ---------------------------------------------------------------- runs
    def create_run(self, name: str, settings: dict[str, Any]) -> int:
        with self._sessions.begin() as s:
            run = Run(name=name, settings=dict(settings), status="created", current_step=0)
            s.add(run)
            s.flush()
            return run.id

    def get_run(self, run_id: int) -> Run | None:
        with self._sessions() as s:
            return s.get(Run, run_id)

    def list_runs(
        self, *, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[list[Run], int]:
        query = select(Run)
        if status is not None:
            query = query.where(Run.status == status)
        return self._page(query, Run.id.desc(), limit, offset)

    def set_run_status(self, run_id: int, status: str, error: str | None = None) -> None:
        if status not in RUN_STATUSES:
            raise ValueError(f"unknown run status {status!r}; one of {RUN_STATUSES}")
        with self._sessions.begin() as s:
            run = s.get(Run, run_id)
            if run is None:
                raise NotFound(f"run {run_id} not found")
            run.status = status
            if error is not None or status not in ("failed",):
                run.error = error

    def set_current_step(self, run_id: int, step: int) -> None:
        with self._sessions.begin() as s:
            run = s.get(Run, run_id)
            if run is None:
                raise NotFound(f"run {run_id} not found")
            run.current_step = step

    def record_step(
        self,
        run_id: int,
        step: int,
        metrics: dict[str, Any],
        group_metrics: dict[str, dict[str, Any]],
        *,
        timings: dict[str, Any] | None = None,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
    ) -> None:
        """Upsert a step's metrics and its per-group rows (keys like ``deduction/propose``).

        `timings` defaults to ``metrics["timings"]`` when present (seconds per phase).
        """
        if timings is None and isinstance(metrics.get("timings"), dict):
            timings = metrics["timings"]
        with self._sessions.begin() as s:
            row = s.scalar(select(Step).where(Step.run_id == run_id, Step.step == step))
            if row is None:
                row = Step(run_id=run_id, step=step)
                s.add(row)
            row.metrics = dict(metrics)
            row.timings = dict(timings or {})
            row.started_at = started_at or row.started_at
            row.finished_at = finished_at or row.finished_at or utcnow()
            for key, values in group_metrics.items():
                task_type, _, role = key.partition("/")
                g = s.scalar(
                    select(StepMetric).where(
                        StepMetric.run_id == run_id,
                        StepMetric.step == step,
                        StepMetric.task_type == task_type,
                        StepMetric.role == role,
                    )
                )
                if g is None:
                    g = StepMetric(run_id=run_id, step=step, task_type=task_type, role=role)
                    s.add(g)
                for col in GROUP_METRIC_COLUMNS:
                    setattr(g, col, values.get(col))
                g.extra = {k: v for k, v in values.items() if k not in GROUP_METRIC_COLUMNS}

    def steps(
        self, run_id: int, step_min: int | None = None, step_max: int | None = None
    ) -> tuple[list[Step], list[StepMetric]]:
        sq = select(Step).where(Step.run_id == run_id)
        gq = select(StepMetric).where(StepMetric.run_id == run_id)
        if step_min is not None:
            sq, gq = sq.where(Step.step >= step_min), gq.where(StepMetric.step >= step_min)
        if step_max is not None:
            sq, gq = sq.where(Step.step <= step_max), gq.where(StepMetric.step <= step_max)
        with self._sessions() as s:
            steps = list(s.scalars(sq.order_by(Step.step)).all())
            groups = list(
                s.scalars(gq.order_by(StepMetric.step, StepMetric.task_type, StepMetric.role)).all()
            )
            return steps, groups

    # ---------------------------------------------------------------- tasks
    def seed(self, run_id: int, tasks: Sequence[Task] | None = None) -> int:
        """Put seed tasks in the buffers; returns how many were new.

        Deduction and abduction seeds go into BOTH the deduction and abduction buffers (a seed
        triplet serves either); induction seeds into the induction buffer. With no `tasks`, the
        identity triplet and the identity induction seed.
        """
        if not tasks:
            tasks = (IDENTITY_SEED, IDENTITY_INDUCTION_SEED)
        added = 0
        for task in tasks:
            if task.task_type == TaskType.INDUCTION:
                targets = [TaskType.INDUCTION]
            else:
                targets = [TaskType.DEDUCTION, TaskType.ABDUCTION]
            for ttype in targets:
                copy = dataclasses.replace(task, task_type=ttype)
                task_id, dup = self.add_task(
                    run_id,
                    copy,
                    step=0,
                    proposer_version=None,
                    validation={"valid": True, "status": "seed"},
                    source="seed",
                )
                added += int(task_id is not None and not dup)
        return added

    def add_task(
        self,
        run_id: int,
        task: Task,
        *,
        step: int,
        proposer_version: int | None,
        validation: dict[str, Any],
        source: str = "proposed",
    ) -> tuple[int | None, bool]:
        """Insert a validated task into its buffer.

        Returns ``(id, False)`` when stored, ``(existing_id, True)`` when a task with the same
        normalised fingerprint is already in this run's buffer of that type (in any status), and
        ``(None, False)`` when the cap policy evicted the new task at once.
        """
        if source not in TASK_SOURCES:
            raise ValueError(f"unknown task source {source!r}; one of {TASK_SOURCES}")
        ttype = TaskType(task.task_type).value
        fingerprint = task_fingerprint(ttype, task.program, list(task.inputs))
        status = {"proposed": "active", "seed": "seed", "injected": "injected"}[source]
        for attempt in range(2):
            try:
                with self._sessions.begin() as s:
                    existing = s.scalar(
                        select(TaskRecord.id).where(
                            TaskRecord.run_id == run_id,
                            TaskRecord.task_type == ttype,
                            TaskRecord.fingerprint == fingerprint,
                        )
                    )
                    if existing is not None:
                        return existing, True
                    rec = TaskRecord(
                        run_id=run_id,
                        task_type=ttype,
                        program=task.program,
                        imports=list(task.imports),
                        inputs=list(task.inputs),
                        outputs=list(task.outputs),
                        message=task.message or "",
                        fingerprint=fingerprint,
                        program_hash=program_hash(ttype, task.program),
                        program_chars=len(task.program),
                        status=status,
                        source=source,
                        step=step,
                        proposer_weight_version=proposer_version,
                        validation=dict(validation),
                        n_solves=0,
                    )
                    s.add(rec)
                    s.flush()
                    evicted = self._apply_cap(s, run_id, ttype)
                    return (None if rec.id in evicted else rec.id), False
            except IntegrityError:
                # A concurrent writer stored the same fingerprint first: the retry finds it.
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def _cap_for(self, s: Session, run_id: int) -> int:
        run = s.get(Run, run_id)
        if run is None:
            raise NotFound(f"run {run_id} not found")
        cap = (run.settings or {}).get("buffer_cap", self.buffer_cap)
        return int(cap) if cap else self.buffer_cap

    def _apply_cap(self, s: Session, run_id: int, task_type: str) -> set[int]:
        cap = self._cap_for(s, run_id)
        in_buffer = (
            TaskRecord.run_id == run_id,
            TaskRecord.task_type == task_type,
            TaskRecord.status.in_(BUFFER_STATUSES),
        )
        size = s.scalar(select(func.count()).select_from(TaskRecord).where(*in_buffer)) or 0
        excess = size - cap
        if excess <= 0:
            return set()
        family = (
            select(TaskRecord.program_hash, func.count().label("n"))
            .where(*in_buffer)
            .group_by(TaskRecord.program_hash)
            .subquery()
        )
        victims = list(
            s.scalars(
                select(TaskRecord.id)
                .join(family, family.c.program_hash == TaskRecord.program_hash)
                .where(
                    TaskRecord.run_id == run_id,
                    TaskRecord.task_type == task_type,
                    TaskRecord.status == "active",
                )
                .order_by(family.c.n.desc(), TaskRecord.step.asc(), TaskRecord.id.asc())
                .limit(excess)
            ).all()
        )
        if victims:
            s.execute(
                update(TaskRecord)
                .where(TaskRecord.id.in_(victims))
                .values(status="evicted", status_reason=f"buffer cap {cap}")
            )
        return set(victims)

    def buffer(
        self,
        run_id: int,
        task_type: TaskType | str,
        *,
        statuses: Sequence[str] = BUFFER_STATUSES,
    ) -> list[tuple[int, Task]]:
        """The tasks of one buffer, oldest first."""
        query = (
            select(TaskRecord)
            .where(
                TaskRecord.run_id == run_id,
                TaskRecord.task_type == TaskType(task_type).value,
                TaskRecord.status.in_(list(statuses)),
            )
            .order_by(TaskRecord.id)
        )
        with self._sessions() as s:
            return [(r.id, record_to_task(r)) for r in s.scalars(query)]

    def buffer_sizes(self, run_id: int) -> dict[str, dict[str, int]]:
        """Counts per task type and status (for the dashboard)."""
        query = (
            select(TaskRecord.task_type, TaskRecord.status, func.count())
            .where(TaskRecord.run_id == run_id)
            .group_by(TaskRecord.task_type, TaskRecord.status)
        )
        out: dict[str, dict[str, int]] = {}
        with self._sessions() as s:
            for ttype, status, n in s.execute(query):
                out.setdefault(ttype, {})[status] = int(n)
        return out

    def record_solve_rate(self, task_id: int, rate: float, n: int) -> None:
        """The task's latest measured solve rate over `n` solver attempts (overwrites, so a
        replayed step records the same value)."""
        with self._sessions.begin() as s:
            rec = s.get(TaskRecord, task_id)
            if rec is None:
                raise NotFound(f"task {task_id} not found")
            rec.solve_rate = float(rate)
            rec.n_solves = int(n)

    def quarantine(self, task_id: int, reason: str) -> TaskRecord:
        """Take a task out of its buffer for good (kept for the record)."""
        with self._sessions.begin() as s:
            rec = s.get(TaskRecord, task_id)
            if rec is None:
                raise NotFound(f"task {task_id} not found")
            rec.status = "quarantined"
            rec.status_reason = reason
            return rec

    def get_task(self, task_id: int) -> TaskRecord | None:
        with self._sessions() as s:
            return s.get(TaskRecord, task_id)

    def list_tasks(
        self, flt: TaskFilter, *, limit: int = 50, offset: int = 0, newest_first: bool = True
    ) -> tuple[list[TaskRecord], int]:
        query = flt.apply(select(TaskRecord))
        order = TaskRecord.id.desc() if newest_first else TaskRecord.id.asc()
        with self._sessions() as s:
            total = s.scalar(flt.apply(select(func.count()).select_from(TaskRecord))) or 0
            rows = s.scalars(query.order_by(order).limit(limit).offset(offset)).all()
            return list(rows), total

    def iter_tasks(self, flt: TaskFilter, *, chunk: int = 500) -> Iterator[TaskRecord]:
        """Every matching task, oldest first, read in chunks by id (keyset pagination, so a
        long export never holds one transaction or all rows in memory)."""
        last = 0
        while True:
            with self._sessions() as s:
                rows = list(
                    s.scalars(
                        flt.apply(select(TaskRecord))
                        .where(TaskRecord.id > last)
                        .order_by(TaskRecord.id)
                        .limit(chunk)
                    ).all()
                )
            if not rows:
                return
            yield from rows
            last = rows[-1].id

    # ---------------------------------------------------------------- weights
    def record_weight_version(
        self,
        version: int,
        path: str,
        checksum: str,
        run_id: int | None = None,
        batch_id: str | None = None,
    ) -> None:
        with self._sessions.begin() as s:
            row = s.get(WeightVersion, version)
            if row is None:
                row = WeightVersion(version=version)
                s.add(row)
            row.path, row.checksum = str(path), checksum
            row.run_id = run_id if run_id is not None else row.run_id
            row.batch_id = batch_id if batch_id is not None else row.batch_id

    def mark_loaded(self, version: int) -> None:
        with self._sessions.begin() as s:
            row = s.get(WeightVersion, version)
            if row is None:
                raise NotFound(f"weight version {version} not recorded")
            row.loaded_at = utcnow()

    def get_weight_version(self, version: int) -> WeightVersion | None:
        with self._sessions() as s:
            return s.get(WeightVersion, version)

    def current_weights(self) -> WeightVersion | None:
        """The version inference loaded last."""
        with self._sessions() as s:
            return s.scalar(
                select(WeightVersion)
                .where(WeightVersion.loaded_at.is_not(None))
                .order_by(WeightVersion.loaded_at.desc(), WeightVersion.version.desc())
                .limit(1)
            )

    def latest_weights(self) -> WeightVersion | None:
        with self._sessions() as s:
            return s.scalar(select(WeightVersion).order_by(WeightVersion.version.desc()).limit(1))

    def weight_history(
        self, *, run_id: int | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[list[WeightVersion], int]:
        query = select(WeightVersion)
        if run_id is not None:
            query = query.where(WeightVersion.run_id == run_id)
        return self._page(query, WeightVersion.version.desc(), limit, offset)

    def _page(self, query: Any, order: Any, limit: int, offset: int) -> tuple[list[Any], int]:
        """One page of `query` in `order`, with the total count of matching rows."""
        with self._sessions() as s:
            total = s.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = s.scalars(query.order_by(order).limit(limit).offset(offset)).all()
            return list(rows), total
