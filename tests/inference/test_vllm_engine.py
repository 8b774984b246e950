"""The real vLLM CPU server with SmolLM2-135M: generation, hot-swap, swap under load.

One server for the module (start-up is about a minute in eager mode on a loaded 2-core machine).
fp32 so its log-probs can be compared with a transformers forward pass.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from azr.common.model import prepare_default_model
from azr.core.tasks import IDENTITY_SEED
from services.inference.app import build_app
from services.inference.engine import WeightLoadError
from services.inference.service import InferenceService
from services.inference.vllm_engine import VLLMEngine
from tests.inference.helpers import perturbed_checkpoint, start_test_vllm

pytestmark = [pytest.mark.slow, pytest.mark.vllm, pytest.mark.timeout(900)]

_runner = asyncio.Runner()
run = _runner.run

PROMPT = "<|im_start|>user\nList three colours.<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def model_dir() -> Path:
    return prepare_default_model()


@pytest.fixture(scope="module")
def engine(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMEngine]:
    """Started in a module-wide event loop (``run``), as in a service process."""
    eng = start_test_vllm(model_dir, tmp_path_factory.mktemp("vllm") / "server.log", run)
    yield eng
    run(eng.close())
    _runner.close()
    assert eng._proc is None


@pytest.fixture(scope="module")
def checkpoint_v1(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return perturbed_checkpoint(model_dir, tmp_path_factory.mktemp("ckpt"), 1, scale=0.5)


def greedy(engine: VLLMEngine, max_tokens: int = 16) -> tuple[int, list[int]]:
    sample = run(engine.generate([PROMPT], temperature=0.0, max_tokens=max_tokens))[0][0]
    return sample.version, sample.completion_token_ids


def test_generation_returns_token_ids_and_policy_logprobs(
    engine: VLLMEngine, model_dir: Path
) -> None:
    from transformers import AutoModelForCausalLM

    out = run(engine.generate([PROMPT, [1, 2, 3]], n=3, temperature=1.0, max_tokens=12, seed=5))
    assert [len(per) for per in out] == [3, 3]
    expected_prompt = engine.tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    for sample in out[0]:
        assert sample.prompt_token_ids == expected_prompt and sample.version == 0
        assert len(sample.completion_token_ids) == len(sample.logprobs) > 0
        ids = torch.tensor([sample.prompt_token_ids + sample.completion_token_ids])
        with torch.no_grad():
            lp = torch.log_softmax(model(ids).logits[0].float(), dim=-1)
        start = len(sample.prompt_token_ids) - 1
        direct = [lp[start + k, t].item() for k, t in enumerate(sample.completion_token_ids)]
        assert sample.logprobs == pytest.approx(direct, abs=0.02)
    assert out[1][0].prompt_token_ids == [1, 2, 3]
    # Greedy with n > 1: vLLM refuses it; the engine returns n copies of the one answer.
    same = run(engine.generate([PROMPT], n=2, temperature=0.0, max_tokens=6))[0]
    assert same[0].completion_token_ids == same[1].completion_token_ids


def test_hot_swap_changes_greedy_output_and_back(
    engine: VLLMEngine, model_dir: Path, checkpoint_v1: Path
) -> None:
    v0 = greedy(engine)
    info = run(engine.load_weights(1, checkpoint_v1))
    assert info.version == 1 and info.swap_seconds is not None
    v1 = greedy(engine)
    assert v1[0] == 1 and v1[1] != v0[1]
    run(engine.load_weights(0, model_dir))
    assert greedy(engine) == v0


def test_swap_under_load_neither_fails_nor_mixes_versions(
    engine: VLLMEngine, model_dir: Path, checkpoint_v1: Path
) -> None:
    ref = {0: greedy(engine, 24)[1]}
    run(engine.load_weights(1, checkpoint_v1))
    ref[1] = greedy(engine, 24)[1]
    run(engine.load_weights(0, model_dir))

    async def scenario() -> list[tuple[int, list[int]]]:
        async def one() -> tuple[int, list[int]]:
            s = (await engine.generate([PROMPT], temperature=0.0, max_tokens=24))[0][0]
            return s.version, s.completion_token_ids

        before = [asyncio.create_task(one()) for _ in range(4)]
        await asyncio.sleep(0.3)  # these are inside the engine now
        swap = asyncio.create_task(engine.load_weights(1, checkpoint_v1))
        while not engine.swapping:
            await asyncio.sleep(0.005)
        during = [asyncio.create_task(one()) for _ in range(4)]  # held until the swap ends
        await swap
        return [*await asyncio.gather(*before), *await asyncio.gather(*during)]

    results = run(scenario())
    assert [v for v, _ in results] == [0] * 4 + [1] * 4
    for version, tokens in results:
        assert tokens == ref[version]
    run(engine.load_weights(0, model_dir))


def test_corrupt_checkpoint_rejected_old_version_serving(
    engine: VLLMEngine, checkpoint_v1: Path, tmp_path: Path
) -> None:
    before = greedy(engine)
    # Hard links keep this cheap (540 MB); the damaged file is replaced, not written through.
    bad = tmp_path / "v000002"
    shutil.copytree(checkpoint_v1, bad, copy_function=os.link)
    config = bad / "config.json"
    text = config.read_text().replace('"hidden_act"', '"hidden_act" ', 1)
    config.unlink()
    config.write_text(text)
    with pytest.raises(WeightLoadError, match=r"config\.json does not match its sha256"):
        run(engine.load_weights(2, bad))
    assert engine.version == before[0]
    assert greedy(engine) == before


def test_solver_route_over_vllm(engine: VLLMEngine) -> None:
    service = InferenceService(engine=engine, max_model_len=1024)
    app = build_app(service, role="solver", manage_engine=False)
    task = {
        "task_type": "deduction",
        "program": IDENTITY_SEED.program,
        "inputs": list(IDENTITY_SEED.inputs),
        "outputs": list(IDENTITY_SEED.outputs),
    }
    with TestClient(app) as client:
        response = client.post(
            "/v1/solve",
            json={"tasks": [task], "n": 2, "sampling": {"max_tokens": 48, "answer_prefill": True}},
        )
        assert response.status_code == 200, response.text
        answers = response.json()["results"][0]["answers"]
        assert len(answers) == 2 and all(a["version"] == 0 for a in answers)
        assert all(len(a["logprobs"]) == len(a["completion_token_ids"]) for a in answers)
        assert client.post("/v1/propose", json={"task_type": "deduction"}).status_code == 404
