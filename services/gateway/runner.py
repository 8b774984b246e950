"""`LoopRunner`: the gateway's `RunControl`. One background thread per active run drives the
orchestrator; pause and stop take effect at the next phase boundary; a run whose status is
still ``running`` when the gateway starts (it was killed) is resumed from its step journal."""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azr.common.checkpoints import ChecksumMismatch, list_versions, verify_checkpoint, version_dir
from azr.core.tasks import Task, TaskType
from azr.loop.journal import StepJournal
from azr.loop.orchestrator import LoopPorts, Orchestrator, StopRequested
from azr.loop.ports import Executor, Inference
from azr.settings import LoopSettings, Settings
from services.gateway.control import InvalidTransition, Unavailable, UnknownVersion
from services.gateway.store import TaskStore

log = logging.getLogger("azr.runner")

PortsFactory = Callable[[int, LoopSettings], LoopPorts]


@dataclass
class _RunThread:
    run_id: int
    paused: threading.Event = field(default_factory=threading.Event)
    stopping: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def gate(self) -> None:
        while self.paused.is_set() and not self.stopping.is_set():
            self.stopping.wait(0.2)
        if self.stopping.is_set():
            raise StopRequested()

    @property
    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


def load_seed_file(path: Path) -> list[Task]:
    """Seed tasks (or a held-out set to reuse) from JSONL: one object per line with task_type,
    program, inputs (and optionally message, imports). Outputs are recomputed by the
    executor."""
    tasks: list[Task] = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            inputs = d["inputs"] if "inputs" in d else [d["input"]]
            tasks.append(
                Task(
                    TaskType(d.get("task_type", "deduction")),
                    str(d.get("program") or d["snippet"]),
                    tuple(str(i) for i in inputs),
                    tuple(str(o) for o in d.get("outputs", ())),
                    str(d.get("message") or ""),
                    tuple(str(i) for i in d.get("imports", ())),
                )
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"{path}:{n}: not a seed task ({exc})") from exc
    return tasks


class LoopRunner:
    def __init__(
        self,
        settings: Settings,
        store: TaskStore,
        ports_factory: PortsFactory,
        *,
        inference: Inference | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.ports_factory = ports_factory
        self.inference = inference
        self.executor = executor
        self.runs: dict[int, _RunThread] = {}
        self.on_step: Callable[[int, dict[str, Any]], None] | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ RunControl
    def start(self, run_id: int) -> None:
        with self._lock:
            current = self.runs.get(run_id)
            if current is not None and current.alive:
                raise InvalidTransition(f"run {run_id} is already running in this gateway")
            if self.store.get_run(run_id) is None:
                raise InvalidTransition(f"run {run_id} does not exist")
            rt = _RunThread(run_id)
            rt.thread = threading.Thread(
                target=self._drive, args=(rt,), name=f"azr-run-{run_id}", daemon=True
            )
            self.runs[run_id] = rt
            rt.thread.start()

    def pause(self, run_id: int) -> None:
        rt = self.runs.get(run_id)
        if rt is None or not rt.alive:
            raise InvalidTransition(f"run {run_id} is not running in this gateway")
        rt.paused.set()

    def resume(self, run_id: int) -> None:
        rt = self.runs.get(run_id)
        if rt is not None and rt.alive and not rt.stopping.is_set():
            rt.paused.clear()
            return
        # not running here (paused before a restart, or failed): continue from the journal
        self.start(run_id)

    def stop(self, run_id: int) -> None:
        rt = self.runs.get(run_id)
        if rt is not None:
            rt.stopping.set()

    def swap_weights(self, version: int) -> dict[str, Any]:
        path = version_dir(self.settings.checkpoint_dir, version)
        if version not in list_versions(self.settings.checkpoint_dir):
            raise UnknownVersion(f"no checkpoint for weight version {version} under {path.name}")
        try:
            checksum = verify_checkpoint(path)
        except ChecksumMismatch as exc:
            raise UnknownVersion(f"checkpoint {version} is corrupt: {exc}") from exc
        if self.inference is None:
            raise Unavailable("no inference service configured")
        try:
            result = self.inference.load_weights(version, str(path))
        except Exception as exc:
            raise Unavailable(f"inference did not load version {version}: {exc}") from exc
        if self.store.get_weight_version(version) is None:
            self.store.record_weight_version(version, str(path), checksum)
        self.store.mark_loaded(version)
        return dict(result)

    def validate_task(
        self, task_type: str, program: str, inputs: list[str], message: str | None
    ) -> dict[str, Any]:
        if self.executor is None:
            raise Unavailable("no executor configured")
        try:
            (v,) = self.executor.validate([(TaskType(task_type), program, inputs, message)])
        except ValueError:
            raise
        except Exception as exc:
            raise Unavailable(f"executor did not answer: {exc}") from exc
        return {
            "valid": v.valid,
            "outputs": list(v.outputs),
            "reason": v.reason,
            "status": v.status,
        }

    # ------------------------------------------------------------------ crash recovery
    def recover(self) -> list[int]:
        """Restart the threads of runs that were running when the gateway died."""
        runs, _ = self.store.list_runs(status="running", limit=500)
        resumed = []
        for run in runs:
            if run.id not in self.runs or not self.runs[run.id].alive:
                log.info("resuming run %s after a restart", run.id)
                self.start(run.id)
                resumed.append(run.id)
        return resumed

    def wait(self, run_id: int, timeout_s: float | None = None) -> bool:
        rt = self.runs.get(run_id)
        if rt is None or rt.thread is None:
            return True
        rt.thread.join(timeout_s)
        return not rt.thread.is_alive()

    def shutdown(self) -> None:
        """Stop every run thread at its next phase boundary (statuses stay as they are, so a
        restarted gateway resumes them)."""
        for rt in self.runs.values():
            rt.stopping.set()
        for rt in self.runs.values():
            if rt.thread is not None:
                rt.thread.join(10)

    # ------------------------------------------------------------------ the thread
    def loop_settings(self, run_id: int) -> tuple[LoopSettings, dict[str, Any]]:
        run = self.store.get_run(run_id)
        assert run is not None
        raw = dict(run.settings or {})
        raw = dict(raw.get("loop", raw))
        known = {k: v for k, v in raw.items() if k in LoopSettings.model_fields}
        cfg = LoopSettings.model_validate({**self.settings.loop.model_dump(), **known})
        return cfg, raw

    def _drive(self, rt: _RunThread) -> None:
        run_id = rt.run_id
        try:
            cfg, _ = self.loop_settings(run_id)
            seed_file = cfg.seed_file
            seeds = load_seed_file(Path(seed_file)) if seed_file else None
            held = cfg.heldout_file
            heldout_tasks = load_seed_file(Path(held)) if held else None
            ports = self.ports_factory(run_id, cfg)
            hook = self.on_step

            def on_step(metrics: dict[str, Any]) -> None:
                if hook is not None:
                    hook(run_id, metrics)

            orch = Orchestrator(
                run_id,
                cfg,
                ports,
                StepJournal(self.settings.data_dir, run_id),
                gate=rt.gate,
                seed_tasks=seeds,
                heldout_tasks=heldout_tasks,
                on_step=on_step,
                weights_timeout_s=cfg.weights_timeout_s,
            )
            orch.run()
        except StopRequested:
            log.info("run %s stopped", run_id)
            return
        except Exception as exc:
            log.error("run %s failed: %s", run_id, traceback.format_exc())
            self._final_status(run_id, "failed", f"{type(exc).__name__}: {exc}")
            return
        log.info("run %s finished", run_id)
        self._final_status(run_id, "finished", None)

    def _final_status(self, run_id: int, status: str, error: str | None) -> None:
        # The API writes "running" right after start() returns; let that land first.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            run = self.store.get_run(run_id)
            if run is None or run.status != "created":
                break
            time.sleep(0.1)
        run = self.store.get_run(run_id)
        if run is not None and run.status == "stopped":
            return
        self.store.set_run_status(run_id, status, error)
