"""The held-out in-distribution set of a run: validated base-model tasks drawn by the seeding
stage and stored apart from the buffers (table `heldout_tasks`), the yardstick of
`azr eval --bench indist` and of the in-loop monitor.

Nothing that samples references or solver tasks reads this table. Its programs are kept out of
the buffers by their `program_key` (the normalised program, whatever the task type), so a
held-out task is never trained on under another task type either.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from azr.core.dedup import program_key, task_fingerprint
from azr.core.tasks import Task, TaskType
from azr.loop.records import task_to_json
from services.gateway.db.models import HeldOutTask


class HeldOutStore:
    def __init__(self, sessions: sessionmaker[Session], run_id: int) -> None:
        self.sessions = sessions
        self.run_id = run_id

    def add(self, tasks: Sequence[Task], proposer_version: int | None) -> int:
        """Store tasks (a task already held out is skipped, so a replay adds nothing);
        returns how many were new."""
        added = 0
        for task in tasks:
            ttype = TaskType(task.task_type).value
            fp = task_fingerprint(ttype, task.program, list(task.inputs))
            try:
                with self.sessions.begin() as s:
                    exists = s.scalar(
                        select(HeldOutTask.id).where(
                            HeldOutTask.run_id == self.run_id,
                            HeldOutTask.task_type == ttype,
                            HeldOutTask.fingerprint == fp,
                        )
                    )
                    if exists is not None:
                        continue
                    s.add(
                        HeldOutTask(
                            run_id=self.run_id,
                            task_type=ttype,
                            program=task.program,
                            imports=list(task.imports),
                            inputs=list(task.inputs),
                            outputs=list(task.outputs),
                            message=task.message or "",
                            fingerprint=fp,
                            program_key=program_key(task.program),
                            proposer_weight_version=proposer_version,
                        )
                    )
                added += 1
            except IntegrityError:  # a concurrent replay stored it first
                continue
        return added

    def tasks(self, task_type: TaskType | None = None) -> list[Task]:
        query = select(HeldOutTask).where(HeldOutTask.run_id == self.run_id)
        if task_type is not None:
            query = query.where(HeldOutTask.task_type == TaskType(task_type).value)
        with self.sessions() as s:
            rows = s.scalars(query.order_by(HeldOutTask.id)).all()
        return [
            Task(
                TaskType(r.task_type),
                r.program,
                tuple(r.inputs),
                tuple(r.outputs),
                r.message or "",
                tuple(r.imports or ()),
            )
            for r in rows
        ]

    def counts(self) -> dict[TaskType, int]:
        query = (
            select(HeldOutTask.task_type, func.count())
            .where(HeldOutTask.run_id == self.run_id)
            .group_by(HeldOutTask.task_type)
        )
        out = dict.fromkeys(TaskType, 0)
        with self.sessions() as s:
            for ttype, n in s.execute(query):
                out[TaskType(ttype)] = int(n)
        return out

    def program_keys(self) -> set[str]:
        with self.sessions() as s:
            keys = s.scalars(
                select(HeldOutTask.program_key).where(HeldOutTask.run_id == self.run_id)
            ).all()
        return set(keys)

    def export(self, path: Path) -> Path:
        """The set as JSONL (one task per line, `task_to_json`), what `azr eval` reads."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            for task in self.tasks():
                fh.write(json.dumps(task_to_json(task), ensure_ascii=False) + "\n")
        tmp.replace(path)
        return path
