# mypy: disable-error-code="untyped-decorator"
"""The Celery side of the executor: tasks run / validate / verify over batches.

Each worker *process* owns its own `Engine` (a fork-server pair), started when the process starts,
and registers its isolation-layer report in Redis so that the API's /readyz can show it.
Messages are acknowledged late and rejected when a worker is lost, so a worker killed mid-batch
does not lose the batch: another worker runs it again (results are pure functions of the batch).

An unacknowledged chunk is also handed out again once the broker's visibility timeout passes, so
that timeout must be longer than any chunk can run, or a slow chunk runs twice. It is derived
from the limits (`chunk_budget_s`), a chunk past that budget is killed (Celery's hard time
limit), and a configured timeout that is not above the budget refuses to start.
A pool process that is sent SIGTERM (the API revoking a chunk it gave up on) kills the sandbox
processes it started before it exits, so a revoked chunk stops running.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from typing import Any

from celery import Celery
from celery.signals import task_prerun, worker_process_init, worker_process_shutdown

from azr.settings import ExecutorSettings, get_settings

log = logging.getLogger("azr.executor.worker")

WORKERS_KEY = "azr:executor:workers"
HEARTBEAT_S = 10.0
STALE_AFTER_S = 3 * HEARTBEAT_S


def redis_url() -> str:
    url = os.environ.get("AZR_REDIS_URL") or get_settings().redis_url
    if not url:
        raise RuntimeError("AZR_REDIS_URL is not set (the executor needs a Redis broker)")
    return url


# Start-up of a sandbox, fork-server restarts and result transfer on top of the items' own time.
CHUNK_MARGIN_S = 30
# Between the hard time limit killing a chunk and its message becoming visible again.
VISIBILITY_MARGIN_S = 30


class VisibilityTimeoutTooShort(ValueError):
    """The configured broker visibility timeout would hand a running chunk to a second worker."""


def chunk_budget_s(cfg: ExecutorSettings) -> int:
    """The longest a chunk may run: every item at the largest timeout a request may ask for, one
    after another, plus a margin. Past it the worker kills the chunk (hard time limit)."""
    item_s = max(cfg.timeout_s, cfg.max_timeout_s)
    return int(max(1, cfg.chunk_size) * item_s + 0.999) + CHUNK_MARGIN_S


def visibility_timeout_s(cfg: ExecutorSettings) -> int:
    """The broker visibility timeout: the configured one if it is above the chunk budget,
    else (unset) the budget plus a margin."""
    budget = chunk_budget_s(cfg)
    if cfg.visibility_timeout_s is None:
        return budget + VISIBILITY_MARGIN_S
    if cfg.visibility_timeout_s <= budget:
        raise VisibilityTimeoutTooShort(
            f"AZR_EXECUTOR__VISIBILITY_TIMEOUT_S={cfg.visibility_timeout_s} is not above the "
            f"longest a chunk may run ({budget} s = chunk_size {cfg.chunk_size} x "
            f"{max(cfg.timeout_s, cfg.max_timeout_s)} s + {CHUNK_MARGIN_S} s): the broker would "
            "hand a running chunk to a second worker. Unset it (derived) or raise it above "
            f"{budget}, or lower chunk_size / max_timeout_s"
        )
    return cfg.visibility_timeout_s


def make_celery(url: str | None = None, cfg: ExecutorSettings | None = None) -> Celery:
    url = url or os.environ.get("AZR_REDIS_URL") or get_settings().redis_url or "redis://"
    s = cfg or get_settings().executor
    visibility = visibility_timeout_s(s)  # raises on a configuration that would run chunks twice
    app = Celery("azr-executor", broker=url, backend=url)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=s.queue,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=600,
        broker_transport_options={"visibility_timeout": visibility},
        # The result backend is the same Redis; its pub/sub wait must not redeliver either.
        result_backend_transport_options={"visibility_timeout": visibility},
        task_time_limit=chunk_budget_s(s),
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        worker_proc_alive_timeout=60,
    )
    return app


app = make_celery()

_engine: Any = None
_engine_pid: int | None = None
_heartbeat_stop = threading.Event()


def engine() -> Any:
    """This process's engine (started lazily if the process-init signal did not run)."""
    global _engine, _engine_pid
    if _engine is None or _engine_pid != os.getpid():
        from services.executor.engine import Engine, EngineLimits
        from services.executor.sandbox import SandboxConfig, SandboxPair, default_seeds

        pair = SandboxPair(SandboxConfig.from_settings(), seeds=default_seeds())
        _engine = Engine(EngineLimits.from_settings(), pair)
        report = _engine.start()
        _engine_pid = os.getpid()
        for name, layer in report["layers"].items():
            if not layer["active"]:
                log.warning("isolation layer %s unavailable: %s", name, layer["detail"])
        _register(report)
    return _engine


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _register(report: dict[str, Any]) -> None:
    import redis

    client = redis.Redis.from_url(redis_url())
    entry = json.dumps({"layers": report["layers"], "ts": time.time(), "pid": os.getpid()})
    client.hset(WORKERS_KEY, _worker_id(), entry)

    def beat() -> None:
        while not _heartbeat_stop.wait(HEARTBEAT_S):
            try:
                data = json.loads(entry)
                data["ts"] = time.time()
                client.hset(WORKERS_KEY, _worker_id(), json.dumps(data))
            except Exception:  # Redis briefly away: the next beat retries
                continue

    threading.Thread(target=beat, name="executor-heartbeat", daemon=True).start()


def _terminate(signum: int, _frame: Any) -> None:
    """SIGTERM of a pool process (a revoke with terminate, or a cold shutdown): kill every
    process this one started (fork-servers and the programs they run) and exit now."""
    import psutil

    try:
        descendants = psutil.Process().children(recursive=True)
    except psutil.Error:
        descendants = []
    for proc in descendants:
        try:
            proc.kill()
        except psutil.Error:
            pass
    _heartbeat_stop.set()
    try:
        import redis

        redis.Redis.from_url(redis_url(), socket_timeout=1).hdel(WORKERS_KEY, _worker_id())
    except Exception:
        pass
    os._exit(128 + signum)


@worker_process_init.connect
def _start_engine(**_: Any) -> None:
    engine()


@task_prerun.connect
def _arm_terminate(**_: Any) -> None:
    # Set per task: billiard installs its own SIGTERM handler (a SystemExit that can hang in
    # interpreter shutdown) after the process-init signal.
    if signal.getsignal(signal.SIGTERM) is not _terminate:
        signal.signal(signal.SIGTERM, _terminate)


@worker_process_shutdown.connect
def _stop_engine(**_: Any) -> None:
    _heartbeat_stop.set()
    if _engine is not None:
        _engine.close()
    try:
        import redis

        redis.Redis.from_url(redis_url()).hdel(WORKERS_KEY, _worker_id())
    except Exception:
        pass


def _within_budget(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chunk budget (and so the visibility timeout) holds for chunks of at most chunk_size
    items at most max_timeout_s each: refuse a larger one (an API configured differently)."""
    cfg = get_settings().executor
    if len(items) > max(1, cfg.chunk_size):
        raise ValueError(f"chunk of {len(items)} items is over this worker's chunk_size")
    for it in items:
        if float(it.get("timeout_s") or 0) > max(cfg.timeout_s, cfg.max_timeout_s):
            raise ValueError("an item's timeout_s is over this worker's max_timeout_s")
    return items


@app.task(name="executor.run")
def run_task(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = engine().run(_within_budget(items))
    return result


@app.task(name="executor.validate")
def validate_task(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = engine().validate(_within_budget(items))
    return result


@app.task(name="executor.verify")
def verify_task(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = engine().verify(_within_budget(items))
    return result


TASKS = {"run": run_task, "validate": validate_task, "verify": verify_task}


def live_workers(client: Any) -> dict[str, dict[str, Any]]:
    """Registered worker processes whose heartbeat is fresh."""
    now = time.time()
    out = {}
    for key, raw in client.hgetall(WORKERS_KEY).items():
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if now - float(entry.get("ts", 0)) <= STALE_AFTER_S:
            out[key.decode() if isinstance(key, bytes) else key] = entry
    return out
