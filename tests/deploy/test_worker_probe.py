"""The executor-worker probe the chart renders, run for real against a real Celery worker: it
passes while this host's worker keeps its heartbeat and fails when there is none."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.deploy import manifests as m

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(m.helm_binary() is None, reason="helm not installed (make setup)"),
]


def _probe_argv() -> list[str]:
    worker = m.workload_by_role(m.render(), "executor-worker")
    container = m.pod_spec(worker)["containers"][0]
    probes = {
        container[k]["exec"]["command"][2]
        for k in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert len(probes) == 1
    argv = list(container["livenessProbe"]["exec"]["command"])
    assert argv[0] == "python"
    return [sys.executable, *argv[1:]]  # the image's python is first on PATH; here the venv's


def _run(argv: list[str], redis_url: str) -> int:
    env: dict[str, Any] = {**os.environ, "AZR_REDIS_URL": redis_url}
    return subprocess.run(argv, env=env, capture_output=True, timeout=60).returncode


def _wait_for(argv: list[str], redis_url: str, code: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    last = _run(argv, redis_url)
    while last != code and time.monotonic() < deadline:
        time.sleep(1.0)
        last = _run(argv, redis_url)
    return last


def test_worker_probe_tracks_a_real_worker(redis_url: str) -> None:
    from services.executor.main import start_worker, stop_worker

    # A database of its own, so workers other tests left registered cannot satisfy the probe.
    url = redis_url.rsplit("/", 1)[0] + "/11"
    argv = _probe_argv()
    assert _run(argv, url) == 1
    worker = start_worker(url, 1, queue="azr-probe-test")
    try:
        assert _wait_for(argv, url, 0, 120) == 0
    finally:
        stop_worker(worker)
    assert _wait_for(argv, url, 1, 45) == 1
