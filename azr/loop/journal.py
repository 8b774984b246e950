"""The step journal: what makes a kill -9 of the gateway harmless.

A step's effects (tasks into the buffers, the reward batch onto the stream, the metrics row) are
first written here as one file, atomically (write, fsync, rename), and only then applied. Each
effect is idempotent (task keys, the batch id), so after a crash the runner re-applies a pending
step instead of generating it again: nothing accepted is lost, nothing is written twice. A step
that crashed before its journal entry was written had no effects and is simply generated anew.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def _atomic_write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself must survive a power cut, not only the bytes
    finally:
        os.close(dir_fd)


class StepJournal:
    """`sub` names the folder of the entries: ``steps``, or ``seeding`` for the rounds of the
    seeding stage (journaled the same way)."""

    def __init__(self, root: Path, run_id: int, sub: str = "steps") -> None:
        self.dir = Path(root) / "runs" / str(run_id)
        self.steps = self.dir / sub

    def rounds(self) -> StepJournal:
        """The seeding stage's journal, beside this run's steps."""
        return StepJournal(self.dir.parent.parent, int(self.dir.name), "seeding")

    def _pending(self, step: int) -> Path:
        return self.steps / f"{step:06d}.json"

    def _done(self, step: int) -> Path:
        return self.steps / f"{step:06d}.done"

    # run-level facts fixed at the start (e.g. the weight version the run started from)
    def meta(self) -> dict[str, Any]:
        path = self.dir / "meta.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def write_meta(self, data: dict[str, Any]) -> None:
        _atomic_write(self.dir / "meta.json", data)

    def write_pending(self, step: int, payload: dict[str, Any]) -> None:
        _atomic_write(self._pending(step), payload)

    def pending(self, step: int) -> dict[str, Any] | None:
        path = self._pending(step)
        if not path.is_file() or self._done(step).is_file():
            return None
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    def mark_done(self, step: int, extra: dict[str, Any] | None = None) -> None:
        _atomic_write(self._done(step), extra or {})

    def is_done(self, step: int) -> bool:
        return self._done(step).is_file()

    def last_done(self) -> int:
        """The highest step whose effects are all applied; -1 before seeding (step 0)."""
        if not self.steps.is_dir():
            return -1
        done = [int(p.name.split(".")[0]) for p in self.steps.glob("*.done")]
        return max(done, default=-1)

    def load(self, step: int) -> dict[str, Any] | None:
        path = self._pending(step)
        return json.loads(path.read_text()) if path.is_file() else None
