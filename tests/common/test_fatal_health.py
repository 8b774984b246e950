"""/healthz reports the fatal state, and a trainer whose start-up fails exits non-zero (a real
process) so that its supervisor or Kubernetes restarts it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from azr.common.http import clear_fatal, install_common, set_fatal
from tests.trainer.helpers import settings_env, trainer_settings
from tests.trainer.process import free_port


def test_healthz_answers_503_with_the_reason_once_fatal() -> None:
    app = FastAPI()
    install_common(app, max_body_bytes=1024)
    with TestClient(app) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        set_fatal("setup failed: disk gone", exit_code=None)
        response = client.get("/healthz")
        assert response.status_code == 503
        assert response.json() == {"status": "fatal", "reason": "setup failed: disk gone"}
        clear_fatal()
        assert client.get("/healthz").status_code == 200


def test_trainer_with_a_broken_model_exits_non_zero(tmp_path: Path, redis_url: str) -> None:
    broken = tmp_path / "no-model"
    broken.mkdir()
    settings = trainer_settings(tmp_path / "data", broken, redis_url)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path.cwd()), **settings_env(settings)}
    env["AZR_TRAINER__PORT"] = str(free_port())
    code = (
        "import logging; from services.trainer.main import serve; "
        f"serve('127.0.0.1', {env['AZR_TRAINER__PORT']})"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0, proc.stderr[-2000:]
    assert "trainer setup failed" in proc.stderr
