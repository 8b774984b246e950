"""An executor for the harness: the configured URL, or one assembled here from the executor's own
parts (`services.executor.main.start_worker` for the Celery worker, `services.executor.api` for
the HTTP front, served in a thread) over the given Redis or an embedded one. Every piece is owned
by this context manager and stopped when it exits, so no worker outlives the evaluation."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from azr.settings import Settings

LOCALHOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOCALHOST, 0))
        port: int = s.getsockname()[1]
        return port


def wait_ready(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{url}/readyz", timeout=2.0)
            if r.status_code == 200:
                return
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.3)
    raise TimeoutError(f"executor at {url} not ready after {timeout_s:.0f} s ({last})")


@contextlib.contextmanager
def _api_thread(redis_url: str, settings: Settings | None) -> Iterator[str]:
    import uvicorn

    from services.executor.api import create_app

    port = _free_port()
    config = uvicorn.Config(
        create_app(redis_url, settings), host=LOCALHOST, port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="eval-executor-api", daemon=True)
    thread.start()
    try:
        yield f"http://{LOCALHOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@contextlib.contextmanager
def executor_url(
    configured: str | None,
    *,
    redis_url: str | None = None,
    data_dir: Path | None = None,
    settings: Settings | None = None,
    workers: int | None = None,
    startup_timeout_s: float = 120.0,
    log_path: Path | None = None,
) -> Iterator[str]:
    """Yield a ready executor URL. With `configured`, only check that it answers."""
    if configured:
        url = configured.rstrip("/")
        wait_ready(url, 10.0)
        yield url
        return
    from azr.common.redis_server import EmbeddedRedis
    from services.executor.main import start_worker, stop_worker

    with contextlib.ExitStack() as stack:
        if redis_url is None:
            redis_dir = Path(data_dir or ".azr") / "eval-redis"
            redis_dir.mkdir(parents=True, exist_ok=True)
            embedded = EmbeddedRedis(redis_dir)
            redis_url = embedded.start()
            stack.callback(embedded.stop)
        worker = start_worker(redis_url, workers, log_file=log_path)
        stack.callback(stop_worker, worker)
        url = stack.enter_context(_api_thread(redis_url, settings))
        wait_ready(url, startup_timeout_s)
        yield url
