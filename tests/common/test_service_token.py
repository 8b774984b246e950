"""The service token: the executor's and inference's data routes need it when it is set, a
service refuses a bind beyond loopback without one, health/ready/metrics stay open, the clients
send it, and `azr up`'s supervisor generates one and shares it with what it starts."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from azr.common.http import InsecureBind, is_loopback, require_token_for_bind
from azr.settings import ExecutorSettings, Settings

TOKEN = "service-secret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REPO = Path(__file__).resolve().parents[2]


def test_the_bind_rule() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        assert is_loopback(host)
        require_token_for_bind("executor", host, None)
    for host in ("0.0.0.0", "::", "10.0.0.5", "executor.example"):
        assert not is_loopback(host)
        with pytest.raises(InsecureBind, match="AZR_SERVICE_TOKEN"):
            require_token_for_bind("executor", host, None)
        with pytest.raises(InsecureBind):
            require_token_for_bind("executor", host, "")
        require_token_for_bind("executor", host, TOKEN)


@pytest.mark.parametrize("service", ["executor", "inference"])
def test_serving_beyond_loopback_without_a_token_refuses_to_start(
    service: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "AZR_SERVICE_TOKEN"}
    env.update(AZR_DATA_DIR=str(tmp_path), PYTHONPATH=str(REPO), AZR_EXECUTOR__WORKERS="1")
    env["AZR_INFERENCE__ENGINE"] = "transformers"
    argv = [
        sys.executable,
        "-m",
        "services.cli",
        "serve",
        service,
        "--host",
        "0.0.0.0",
        "--port",
        "1",
    ]
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"`azr serve {service} --host 0.0.0.0` started without a token:\n{out!r}")
    assert proc.returncode != 0
    text = out.decode(errors="replace")
    assert f"refusing to start the {service} on 0.0.0.0" in text and "AZR_SERVICE_TOKEN" in text


def test_executor_data_routes_need_the_token(redis_url: str) -> None:
    from services.executor.api import create_app

    queue = f"azr-token-{uuid.uuid4().hex[:8]}"
    cfg = ExecutorSettings(queue=queue, request_timeout_s=1)
    app = create_app(redis_url, Settings(service_token=TOKEN, executor=cfg))
    run = {"items": [{"program": "def f():\n    return 1", "input": ""}]}
    with TestClient(app) as client:
        for route, body in [
            ("/v1/run", run),
            (
                "/v1/validate",
                {"items": [{"task_type": "deduction", "program": "x", "inputs": ["1"]}]},
            ),
            ("/v1/verify", {"items": [{"task_type": "deduction", "output": "1", "answer": "1"}]}),
        ]:
            r = client.post(route, json=body)
            assert r.status_code == 401 and "bearer token" in r.json()["detail"], route
            r = client.post(route, json=body, headers={"Authorization": "Bearer nope"})
            assert r.status_code == 401 and r.json()["detail"] == "invalid bearer token"
        # with the token the request gets through to the queue (no worker here: 504)
        assert client.post("/v1/run", json=run, headers=AUTH).status_code == 504
        assert client.get("/healthz").status_code == 200
        assert client.get("/metrics").status_code == 200
        assert client.get("/readyz").status_code != 401
    # no token configured (a loopback bind): the routes are open
    with TestClient(create_app(redis_url, Settings(executor=cfg))) as client:
        assert client.post("/v1/run", json=run).status_code == 504


def test_inference_data_routes_need_the_token(tiny_model_dir: Path, tmp_path: Path) -> None:
    from services.inference.app import build_app
    from services.inference.service import InferenceService
    from services.inference.transformers_engine import TransformersEngine

    service = InferenceService(engine=TransformersEngine(tiny_model_dir, device="cpu"))
    app = build_app(service, token=TOKEN, checkpoint_root=tmp_path, manage_engine=False)
    task = {"task_type": "deduction", "program": "def f(x):\n    return x", "inputs": ["1"]}
    calls = [
        ("/v1/generate", {"prompts": ["hi"]}),
        ("/v1/propose", {"task_type": "deduction", "references": [{**task, "outputs": ["1"]}]}),
        ("/v1/solve", {"tasks": [{**task, "outputs": ["1"]}]}),
        ("/v1/weights", {"version": 1, "path": str(tmp_path / "v000001")}),
    ]
    with TestClient(app) as client:
        for route, body in calls:
            r = client.post(route, json=body)
            assert r.status_code == 401, (route, r.text)
            wrong = client.post(route, json=body, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            # with the token: past the check (the engine was never started: 503; no folder: 422)
            assert client.post(route, json=body, headers=AUTH).status_code in (503, 422), route
        assert client.get("/v1/weights").status_code == 200
        assert client.get("/healthz").status_code == 200
        assert client.get("/metrics").status_code == 200
        assert client.get("/readyz").status_code != 401


def test_the_local_stack_shares_one_generated_token(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.executor.client import ExecutorClient, ExecutorError
    from services.gateway.loop.adapters import HttpExecutor, ServiceError
    from services.gateway.supervisor import Supervisor

    settings = Settings(data_dir=tmp_path, redis_url=redis_url)
    env = {"AZR_EXECUTOR__WORKERS": "1", "AZR_EXECUTOR__QUEUE": f"azr-up-{uuid.uuid4().hex[:8]}"}
    monkeypatch.delenv("AZR_SERVICE_TOKEN", raising=False)
    with Supervisor(
        settings, services=("executor",), auto_ports=True, extra_env=env, ready_timeout_s=120
    ) as sup:
        token = sup.service_token
        assert len(token) >= 32
        token_file = tmp_path / "service-token"
        assert token_file.read_text().strip() == token
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        url = sup.url("executor")
        program = {"program": "def f(a):\n    return a + 1", "input": "1"}
        with ExecutorClient(url, timeout_s=60) as anonymous:
            with pytest.raises(ExecutorError) as err:
                anonymous.run([program])
            assert err.value.status_code == 401
        with ExecutorClient(url, timeout_s=60, token=token) as client:
            assert client.run([program])[0].output == "2"
        # the gateway's executor adapter sends it too
        from azr.core.tasks import TaskType

        item = (TaskType.DEDUCTION, "def f(a):\n    return a * 2", ["3"], None)
        (validation,) = HttpExecutor(url, timeout_s=60, token=token).validate([item])
        assert validation.valid and list(validation.outputs) == ["6"]
        with pytest.raises(ServiceError, match="401"):
            HttpExecutor(url, timeout_s=60).validate([item])
