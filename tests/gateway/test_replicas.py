"""The loop's inference adapter over two real inference replicas (transformers engine, the tiny
model, each its own uvicorn server): requests spread over both, a weight swap loads both before
it returns, and a replica that serves or loads the wrong version leaves the rotation."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from azr.core.tasks import IDENTITY_SEED
from azr.loop.ports import Sampling
from services.gateway.loop.adapters import HttpInference
from services.gateway.loop.replicas import NoReplica
from services.inference.app import build_app
from services.inference.service import InferenceService
from services.inference.transformers_engine import TransformersEngine
from tests.common.servers import served
from tests.inference.helpers import perturbed_checkpoint

TOKEN = "replica-token"


@dataclass
class Server:
    url: str
    running: contextlib.ExitStack

    def version(self) -> int:
        return int(httpx.get(self.url + "/v1/weights", timeout=10).json()["version"])

    def stop(self) -> None:
        self.running.close()  # idempotent


def start_replica(model_dir: Path, checkpoint_root: Path) -> Server:
    service = InferenceService(engine=TransformersEngine(model_dir, device="cpu"))
    app = build_app(
        service,
        role="inference",
        token=TOKEN,
        checkpoint_root=checkpoint_root,
        wait_for_engine=True,
    )
    running = contextlib.ExitStack()
    port = running.enter_context(served(app, lifespan="on", start_timeout_s=60))
    return Server(f"http://127.0.0.1:{port}", running)


@pytest.fixture
def replicas(tiny_model_dir: Path, tmp_path: Path) -> Iterator[list[Server]]:
    # the weights guard serves versions only from under the checkpoint root
    servers = [start_replica(tiny_model_dir, tmp_path), start_replica(tiny_model_dir, tmp_path)]
    yield servers
    for s in servers:
        s.stop()


def solve_versions(inference: HttpInference, n_tasks: int) -> set[int]:
    sampling = Sampling(1.0, 1.0, 4, 0)
    answers = inference.solve([IDENTITY_SEED] * n_tasks, 1, sampling)
    return {a.weight_version for per_task in answers for a in per_task}


@pytest.mark.slow
def test_two_replicas_spread_swap_together_and_drop_a_stale_one(
    replicas: list[Server], tiny_model_dir: Path, tmp_path: Path
) -> None:
    a, b = replicas
    v = {i: perturbed_checkpoint(tiny_model_dir, tmp_path / "ckpt", i, seed=i) for i in (1, 2, 3)}
    # concurrency 1: one task per request, so four requests go round-robin over both replicas
    inference = HttpInference(a.url, a.url, TOKEN, concurrency=1, replicas=[a.url, b.url])
    assert inference.replicas is not None
    try:
        assert inference.current_version() == 0
        assert solve_versions(inference, 4) == {0}
        assert [r["requests"] for r in inference.replicas.status()] == [2, 2]

        # The swap is a barrier: when it returns, both replicas serve version 1.
        inference.load_weights(1, str(v[1]))
        assert (a.version(), b.version()) == (1, 1)
        assert inference.current_version() == 1
        assert solve_versions(inference, 4) == {1}

        # Replica b restarts on other weights behind the loop's back: its answers are refused,
        # it leaves the rotation, and the step's samples all still come from version 1.
        httpx.post(
            b.url + "/v1/weights",
            json={"version": 0, "path": str(tiny_model_dir)},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=60,
        ).raise_for_status()
        assert solve_versions(inference, 4) == {1}
        status = {r["url"]: r for r in inference.replicas.status()}
        assert not status[b.url]["in_rotation"] and "version 0" in status[b.url]["reason"]

        # The next swap brings it back.
        inference.load_weights(2, str(v[2]))
        assert (a.version(), b.version()) == (2, 2)
        assert all(r["in_rotation"] for r in inference.replicas.status())

        # Replica b is gone: it fails to load version 3 and is never asked again.
        b.stop()
        inference.load_weights(3, str(v[3]))
        assert a.version() == 3
        status = {r["url"]: r for r in inference.replicas.status()}
        assert not status[b.url]["in_rotation"] and "version 3" in status[b.url]["reason"]
        before = status[b.url]["requests"]
        assert solve_versions(inference, 4) == {3}
        assert {r["url"]: r for r in inference.replicas.status()}[b.url]["requests"] == before

        # A version no replica can load: the swap fails loudly instead of serving old weights.
        with pytest.raises(NoReplica):
            inference.load_weights(4, str(tmp_path / "missing"))
    finally:
        inference.close()
