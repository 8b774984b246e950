"""A whole local stack (real Redis, executor + Celery workers, inference on the tiny model,
trainer, gateway) under the supervisor, for the end-to-end and crash tests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from azr.settings import Settings
from services.gateway.supervisor import Supervisor

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Small enough for two cores: the tiny model writes 24 tokens per answer.
SMALL_RUN = {
    "steps": 2,
    "batch_size": 2,
    "n_rollouts": 2,
    "k_references": 2,
    "induction_inputs": 4,
    "max_tokens": 24,
    # the seeding stage has its own tests (test_seeding.py); one round in test_e2e_loop.py
    "seed_tasks_per_type": 0,
    "heldout_tasks_per_type": 0,
}


def stack_settings(tmp: Path, model_dir: Path) -> tuple[Settings, dict[str, str]]:
    env = {
        "AZR_API_TOKEN": TOKEN,
        "AZR_INFERENCE__ENGINE": "transformers",
        "AZR_INFERENCE__MODEL": str(model_dir),
        "AZR_INFERENCE__DEVICE": "cpu",
        "AZR_TRAINER__DEVICE": "cpu",
        "AZR_TRAINER__LR": "0.001",
        "AZR_EXECUTOR__WORKERS": "2",
        "AZR_LOG_LEVEL": "INFO",
    }
    settings = Settings(data_dir=tmp / "data", redis_url=None, api_token=TOKEN)
    settings.inference.engine = "transformers"
    return settings, env


@contextmanager
def running_stack(tmp: Path, model_dir: Path) -> Iterator[Supervisor]:
    settings, env = stack_settings(tmp, model_dir)
    sup = Supervisor(settings, auto_ports=True, extra_env=env, ready_timeout_s=300)
    sup.start()
    try:
        yield sup
    finally:
        sup.stop()


def start_run(gateway: str, settings: dict[str, Any], name: str = "test") -> int:
    resp = httpx.post(
        f"{gateway}/v1/runs", json={"name": name, "settings": settings}, headers=AUTH, timeout=30
    )
    assert resp.status_code == 201, resp.text
    return int(resp.json()["id"])


def get(gateway: str, path: str, **params: Any) -> Any:
    resp = httpx.get(f"{gateway}{path}", params=params, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()


def wait_for_status(
    gateway: str, run_id: int, statuses: tuple[str, ...], timeout_s: float = 600
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            last = get(gateway, f"/v1/runs/{run_id}")
        except httpx.HTTPError:
            time.sleep(0.5)  # the gateway may be restarting
            continue
        if last["status"] in statuses:
            return last
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} did not reach {statuses} in time; last: {last}")


def assert_trained_once(sup: Supervisor, stream: str, trained: int) -> None:
    """Every batch was published once and trained once: acknowledged batches leave the stream
    (trimmed), the trainer trained `trained` of them and saw no second copy of any."""
    assert stream_batch_ids(sup.redis_url, stream) == []
    counts = get(sup.url("trainer"), "/v1/status")["counts"]
    assert counts["trained"] == trained, counts
    assert counts["duplicate"] == 0 and counts["dead_letter"] == 0, counts


def stream_batch_ids(redis_url: str, stream: str) -> list[str]:
    import redis

    client = redis.Redis.from_url(redis_url)
    return [f[b"batch_id"].decode() for _, f in client.xrange(stream)]
