"""InferenceClient against a real uvicorn server (transformers engine, tiny model)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from azr.contracts.inference import ProposeRequest, Sampling, SolveRequest, TaskIn
from azr.core.tasks import IDENTITY_SEED, TaskType
from services.inference.app import build_app
from services.inference.client import InferenceClient, InferenceError
from services.inference.service import InferenceService
from services.inference.transformers_engine import TransformersEngine
from tests.common.servers import served
from tests.inference.helpers import perturbed_checkpoint

TOKEN = "client-token"


@pytest.fixture(scope="module")
def checkpoint_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("checkpoints")


@pytest.fixture(scope="module")
def base_url(tiny_model_dir: Path, checkpoint_root: Path) -> Iterator[str]:
    service = InferenceService(engine=TransformersEngine(tiny_model_dir, device="cpu"))
    app = build_app(
        service,
        role="inference",
        token=TOKEN,
        checkpoint_root=checkpoint_root,
        wait_for_engine=True,
    )
    with served(app, lifespan="on", start_timeout_s=60) as port:
        yield f"http://127.0.0.1:{port}"


def seed_task() -> TaskIn:
    return TaskIn(
        task_type=TaskType.DEDUCTION,
        program=IDENTITY_SEED.program,
        inputs=list(IDENTITY_SEED.inputs),
        outputs=list(IDENTITY_SEED.outputs),
    )


def test_sync_client_round_trip(base_url: str, tiny_model_dir: Path, checkpoint_root: Path) -> None:
    with InferenceClient(base_url, token=TOKEN) as client:
        assert client.ready()
        sampling = Sampling(max_tokens=8, seed=0)
        proposals = client.propose(
            ProposeRequest(
                task_type=TaskType.ABDUCTION, references=[seed_task()], n=2, sampling=sampling
            )
        )
        assert len(proposals.proposals) == 2 and proposals.proposals[0].version == 0
        solved = client.solve(SolveRequest(tasks=[seed_task()], n=3, sampling=sampling))
        assert len(solved.results[0].answers) == 3
        v1 = perturbed_checkpoint(tiny_model_dir, checkpoint_root, 1)
        assert client.load_weights(1, str(v1)).version == 1
        assert client.weights().version == 1
        with pytest.raises(InferenceError) as err:
            client.load_weights(2, str(checkpoint_root / "nowhere"))
        assert err.value.status == 422 and "does not exist" in err.value.detail
        assert client.load_weights(0, str(tiny_model_dir)).version == 0


def test_async_client_and_auth_error(base_url: str) -> None:
    async def scenario() -> None:
        client = InferenceClient(base_url, token=TOKEN)
        wrong = InferenceClient(base_url, token="wrong")
        try:
            results = await asyncio.gather(
                *(
                    client.asolve(
                        SolveRequest(tasks=[seed_task()], sampling=Sampling(max_tokens=4))
                    )
                    for _ in range(3)
                )
            )
            assert all(len(r.results[0].answers) == 1 for r in results)
            # reads stay open; every data route needs the token
            assert (await wrong.aweights()).version == 0
            with pytest.raises(InferenceError) as err:
                await wrong.asolve(SolveRequest(tasks=[seed_task()]))
            assert err.value.status == 401
            with pytest.raises(InferenceError) as err:
                await wrong.aload_weights(1, "/nonexistent")
            assert err.value.status == 401
        finally:
            await client.aclose()
            await wrong.aclose()

    asyncio.run(scenario())
