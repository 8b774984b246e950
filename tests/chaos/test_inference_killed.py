"""Chaos: the inference process is killed (SIGKILL) while it generates for the loop. The
supervisor restarts it on the same port and the loop's retries (refused connections, then 503
while the engine loads) carry the same request through: the step gets every answer."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from azr.common.retry import RetryPolicy
from azr.core.tasks import IDENTITY_SEED
from azr.loop.ports import Sampling
from services.gateway.loop.adapters import HttpInference
from services.gateway.supervisor import Supervisor
from tests.gateway.loop_stack import stack_settings

pytestmark = pytest.mark.slow

# enough patience for a restart plus a model load on a busy two-core machine (about 70 s)
PATIENT = RetryPolicy(attempts=16, initial_wait_s=0.5, max_wait_s=5.0)


def test_inference_killed_mid_generation_recovers(tmp_path: Path, tiny_model_dir: Path) -> None:
    settings, env = stack_settings(tmp_path, tiny_model_dir)
    with Supervisor(
        settings, services=("inference",), auto_ports=True, extra_env=env, ready_timeout_s=180
    ) as sup:
        url = sup.url("inference")
        inference = HttpInference(url, url, sup.service_token, timeout_s=120, retry=PATIENT)
        tasks = [IDENTITY_SEED] * 4
        result: dict[str, Any] = {}

        def solve() -> None:
            try:
                result["answers"] = inference.solve(tasks, 4, Sampling(1.0, 1.0, 256, 0))
            except Exception as exc:  # reported by the assertions below
                result["error"] = exc

        first_pid = sup.children["inference"].proc.pid  # type: ignore[union-attr]
        worker = threading.Thread(target=solve)
        worker.start()
        time.sleep(1.5)  # the request is in the engine now
        assert worker.is_alive(), "generation finished before the kill: the test proves nothing"
        os.kill(first_pid, signal.SIGKILL)
        worker.join(timeout=240)
        assert not worker.is_alive()
        assert "error" not in result, result.get("error")
        answers = result["answers"]
        assert len(answers) == len(tasks) and all(len(a) == 4 for a in answers)
        assert sup.restarts("inference") == 1
        assert sup.children["inference"].proc.pid != first_pid  # type: ignore[union-attr]
        inference.close()
