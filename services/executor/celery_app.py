# mypy: disable-error-code="untyped-decorator"
"""The Celery side of the executor: tasks run / validate / verify over batches.

Each worker *process* owns its own `Engine` (a fork-server pair), started when the process starts,
and registers its isolation-layer report in Redis so that the API's /readyz can show it.
Messages are acknowledged late and rejected when a worker is lost, so a worker killed mid-batch
does not lose the batch: another worker runs it again (results are pure functions of the batch).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown

from azr.settings import get_settings

log = logging.getLogger("azr.executor.worker")

WORKERS_KEY = "azr:executor:workers"
HEARTBEAT_S = 10.0
STALE_AFTER_S = 3 * HEARTBEAT_S


def redis_url() -> str:
    url = os.environ.get("AZR_REDIS_URL") or get_settings().redis_url
    if not url:
        raise RuntimeError("AZR_REDIS_URL is not set (the executor needs a Redis broker)")
    return url


def make_celery(url: str | None = None) -> Celery:
    url = url or os.environ.get("AZR_REDIS_URL") or get_settings().redis_url or "redis://"
    s = get_settings().executor
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
        broker_transport_options={"visibility_timeout": s.visibility_timeout_s},
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


@worker_process_init.connect
def _start_engine(**_: Any) -> None:
    engine()


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


@app.task(name="executor.run")
def run_task(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = engine().run(items)
    return result


@app.task(name="executor.validate")
def validate_task(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = engine().validate(items)
    return result


@app.task(name="executor.verify")
def verify_task(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = engine().verify(items)
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
