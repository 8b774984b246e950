"""`azr serve executor`: the API plus its Celery worker processes (and an embedded Redis when no
AZR_REDIS_URL is configured). `azr serve executor-worker`: the workers alone (what a Kubernetes
worker pod runs). `start_worker` is the helper tests and the local stack supervisor use."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import redis

from azr.common.processes import die_with_parent
from azr.settings import get_settings

log = logging.getLogger("azr.executor")
_REPO_ROOT = str(Path(__file__).resolve().parents[2])


def worker_command(concurrency: int, queue: str, name: str | None = None) -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "services.executor.celery_app:app",
        "worker",
        "-Q",
        queue,
        "-c",
        str(concurrency),
        "-P",
        "prefork",
        "--prefetch-multiplier",
        "1",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-n",
        f"{name or 'executor-' + uuid.uuid4().hex[:8]}@%h",
        "--loglevel",
        "INFO",
    ]


def start_worker(
    redis_url: str,
    concurrency: int | None = None,
    *,
    queue: str | None = None,
    env: dict[str, str] | None = None,
    log_file: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a Celery worker process (in its own process group, so `stop_worker` reaps its pool
    processes and their fork-servers too)."""
    s = get_settings().executor
    n = s.workers if concurrency is None else concurrency
    if n < 1:
        # Celery reads `-c 0` as "one per CPU"; here 0 means no worker, so never pass it on.
        raise ValueError(f"a worker needs at least 1 process (got {n})")
    child_env = {**os.environ, **(env or {}), "AZR_REDIS_URL": redis_url}
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (_REPO_ROOT, child_env.get("PYTHONPATH", "")) if p
    )
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        worker_command(n, queue or s.queue),
        env=child_env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )


def stop_worker(proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    """Warm shutdown (SIGTERM), then SIGKILL of the whole process group."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def wait_ready(redis_url: str, n_processes: int = 1, timeout_s: float = 90.0) -> None:
    """Block until `n_processes` worker processes have registered their sandbox."""
    from services.executor.celery_app import live_workers

    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(live_workers(client)) >= n_processes:
            return
        time.sleep(0.2)
    raise TimeoutError(f"fewer than {n_processes} executor worker processes registered")


def serve(host: str | None = None, port: int | None = None, role: str = "executor") -> None:
    import uvicorn

    from azr.common.http import InsecureBind, require_token_for_bind
    from azr.common.redis_server import resolve_redis_url
    from services.executor.api import create_app

    settings = get_settings()
    logging.basicConfig(level=settings.log_level)
    try:
        # importing the Celery app checks the visibility timeout against the chunk budget
        from services.executor.celery_app import visibility_timeout_s

        visibility_timeout_s(settings.executor)
        if role != "executor-worker":
            host = host or settings.executor.host
            require_token_for_bind("executor", host, settings.service_token)
    except (ValueError, InsecureBind) as exc:  # VisibilityTimeoutTooShort is a ValueError
        raise SystemExit(str(exc)) from None
    url, embedded = resolve_redis_url(
        settings.data_dir, os.environ.get("AZR_REDIS_URL") or settings.redis_url
    )
    os.environ["AZR_REDIS_URL"] = url
    s = settings.executor
    if role == "executor-worker" and s.workers < 1:
        raise SystemExit("AZR_EXECUTOR__WORKERS must be >= 1 for `azr serve executor-worker`")
    if role == "executor-worker" and embedded is None:
        # a worker pod: become the Celery worker itself, so signals reach it directly
        os.execv(sys.executable, worker_command(s.workers, s.queue))
    # AZR_EXECUTOR__WORKERS=0: the API alone; separate worker processes/pods consume the queue
    worker = start_worker(url) if s.workers > 0 else None
    if worker is None:
        log.info("no embedded executor workers (AZR_EXECUTOR__WORKERS=0): API only")
    try:
        if role == "executor-worker":
            assert worker is not None
            worker.wait()
            return
        app = create_app(url, settings)
        uvicorn.run(
            app,
            host=host or settings.executor.host,
            port=port or settings.executor.port,
            log_level=settings.log_level.lower(),
        )
    finally:
        if worker is not None:
            stop_worker(worker)
        if embedded is not None:
            embedded.stop()
