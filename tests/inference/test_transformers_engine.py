"""The transformers engine on the tiny random Llama: generation, logprobs, swaps."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from services.inference.engine import WeightLoadError
from services.inference.transformers_engine import TransformersEngine
from tests.inference.helpers import corrupt, perturbed_checkpoint

PROMPTS = ["def f(a):\n    return a", "The quick brown fox jumps over the lazy dog and then"]


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> Iterator[TransformersEngine]:
    eng = TransformersEngine(tiny_model_dir, device="cpu", max_batch=8)
    asyncio.run(eng.start())
    yield eng
    asyncio.run(eng.close())


@pytest.fixture(scope="module")
def checkpoint_v1(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return perturbed_checkpoint(tiny_model_dir, tmp_path_factory.mktemp("ckpt"), 1, scale=1.0)


def _forward_logprobs(
    engine: TransformersEngine, prompt_ids: list[int], completion: list[int], temperature: float
) -> list[float]:
    """Log-probs of `completion` from one unpadded forward pass (scaled by the temperature)."""
    ids = torch.tensor([prompt_ids + completion])
    with torch.no_grad():
        logits = engine._model(ids).logits[0].float() / temperature
    lp = torch.log_softmax(logits, dim=-1)
    start = len(prompt_ids) - 1
    return [lp[start + k, t].item() for k, t in enumerate(completion)]


def _greedy(
    engine: TransformersEngine, prompts: list[str], max_tokens: int = 12
) -> list[list[int]]:
    out = asyncio.run(engine.generate(prompts, temperature=0.0, max_tokens=max_tokens))
    return [per[0].completion_token_ids for per in out]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_token_ids_and_logprobs_match_a_forward_pass(
    engine: TransformersEngine, temperature: float
) -> None:
    out = asyncio.run(engine.generate(PROMPTS, n=2, temperature=temperature, max_tokens=10, seed=1))
    assert [len(per) for per in out] == [2, 2]
    tok = engine.tokenizer
    for prompt, per in zip(PROMPTS, out, strict=True):
        for sample in per:
            assert sample.prompt_token_ids == tok(prompt, add_special_tokens=False)["input_ids"]
            assert len(sample.completion_token_ids) == len(sample.logprobs) > 0
            assert sample.text == tok.decode(sample.completion_token_ids, skip_special_tokens=True)
            assert sample.version == engine.version
            direct = _forward_logprobs(
                engine, sample.prompt_token_ids, sample.completion_token_ids, temperature
            )
            # The first prompt is left-padded in the batch; padding must not change anything.
            assert sample.logprobs == pytest.approx(direct, abs=2e-4)


def test_seed_reproduces_and_token_id_prompts_work(engine: TransformersEngine) -> None:
    a = asyncio.run(engine.generate(PROMPTS, n=3, max_tokens=8, seed=7))
    b = asyncio.run(engine.generate(PROMPTS, n=3, max_tokens=8, seed=7))
    assert [[s.completion_token_ids for s in p] for p in a] == [
        [s.completion_token_ids for s in p] for p in b
    ]
    # Unseeded calls must not replay one another.
    c1 = asyncio.run(engine.generate([PROMPTS[0]], n=2, max_tokens=8))
    c2 = asyncio.run(engine.generate([PROMPTS[0]], n=2, max_tokens=8))
    assert [s.completion_token_ids for s in c1[0]] != [s.completion_token_ids for s in c2[0]]
    ids = a[1][0].prompt_token_ids
    c = asyncio.run(engine.generate([ids], temperature=0.0, max_tokens=8))
    d = asyncio.run(engine.generate([PROMPTS[1]], temperature=0.0, max_tokens=8))
    assert c[0][0].completion_token_ids == d[0][0].completion_token_ids


def test_stop_string_ends_the_completion(engine: TransformersEngine) -> None:
    out = asyncio.run(engine.generate([PROMPTS[1]], temperature=0.0, max_tokens=20))[0][0]
    text = out.text
    stop = text[len(text) // 2 : len(text) // 2 + 2]  # a piece the greedy output will produce
    assert stop.strip(), f"need a visible stop string in {text!r}"
    stopped = asyncio.run(
        engine.generate([PROMPTS[1]], temperature=0.0, max_tokens=20, stop=[stop])
    )[0][0]
    assert stopped.finish_reason == "stop"
    assert stopped.text.endswith(stop) and text.startswith(stopped.text)
    assert len(stopped.completion_token_ids) < len(out.completion_token_ids)
    assert len(stopped.logprobs) == len(stopped.completion_token_ids)


def test_swap_changes_greedy_output_and_back(
    engine: TransformersEngine, tiny_model_dir: Path, checkpoint_v1: Path
) -> None:
    before = _greedy(engine, PROMPTS)
    info = asyncio.run(engine.load_weights(1, checkpoint_v1))
    assert info.version == engine.version == 1 and info.checksum == engine.checksum
    after = _greedy(engine, PROMPTS)
    assert after != before
    out = asyncio.run(engine.generate(PROMPTS, temperature=0.0, max_tokens=4))
    assert {s.version for per in out for s in per} == {1}
    asyncio.run(engine.load_weights(0, tiny_model_dir))
    assert _greedy(engine, PROMPTS) == before and engine.version == 0


def test_corrupt_checkpoint_is_rejected_and_old_version_serves(
    engine: TransformersEngine, checkpoint_v1: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "v000002"
    shutil.copytree(checkpoint_v1, bad)
    corrupt(bad)
    before = _greedy(engine, PROMPTS)
    version, checksum = engine.version, engine.checksum
    with pytest.raises(WeightLoadError, match="sha256"):
        asyncio.run(engine.load_weights(2, bad))
    with pytest.raises(WeightLoadError, match="does not exist"):
        asyncio.run(engine.load_weights(3, tmp_path / "missing"))
    assert (engine.version, engine.checksum) == (version, checksum)
    assert _greedy(engine, PROMPTS) == before


def test_swap_under_load_keeps_every_request_on_one_version(
    engine: TransformersEngine, tiny_model_dir: Path, checkpoint_v1: Path
) -> None:
    prompt = [PROMPTS[1]]
    ref = {0: _greedy(engine, prompt, 16)[0]}
    asyncio.run(engine.load_weights(1, checkpoint_v1))
    ref[1] = _greedy(engine, prompt, 16)[0]
    asyncio.run(engine.load_weights(0, tiny_model_dir))
    assert ref[0] != ref[1]

    async def scenario() -> list[tuple[int, list[int]]]:
        async def one() -> tuple[int, list[int]]:
            sample = (await engine.generate(prompt, temperature=0.0, max_tokens=16))[0][0]
            return sample.version, sample.completion_token_ids

        before = [asyncio.create_task(one()) for _ in range(6)]
        await asyncio.sleep(0)  # let them take their read slots
        swap = asyncio.create_task(engine.load_weights(1, checkpoint_v1))
        while not engine.swapping:
            await asyncio.sleep(0.001)
        during = [asyncio.create_task(one()) for _ in range(6)]  # held until the swap ends
        await swap
        return [*await asyncio.gather(*before), *await asyncio.gather(*during)]

    results = asyncio.run(scenario())
    assert [v for v, _ in results] == [0] * 6 + [1] * 6
    for version, tokens in results:  # every request wholly from the version it names
        assert tokens == ref[version]
    asyncio.run(engine.load_weights(0, tiny_model_dir))
