"""AZR_EXECUTOR__WORKERS=0 means "the API alone": `azr serve executor` starts no Celery worker
(Celery itself would read `-c 0` as one process per CPU)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from services.executor.main import start_worker
from tests.executor.conftest import children_of

_REPO_ROOT = str(Path(__file__).resolve().parents[2])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_start_worker_refuses_zero_processes(redis_url: str) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        start_worker(redis_url, 0)


def test_serve_with_zero_workers_is_api_only(redis_url: str, tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "AZR_REDIS_URL": redis_url,
        "AZR_EXECUTOR__WORKERS": "0",
        "AZR_EXECUTOR__QUEUE": "azr-executor-zero-test",
        "AZR_DATA_DIR": str(tmp_path),
        "PYTHONPATH": _REPO_ROOT,
    }
    cmd = [sys.executable, "-m", "services.cli", "serve", "executor", "--host", "127.0.0.1"]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, "azr serve executor exited"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "the API never answered"
                time.sleep(0.3)
        assert children_of(proc.pid) == [], "a worker was started although WORKERS=0"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
