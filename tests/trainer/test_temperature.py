"""Temperature-consistent updates: the trainer scores each completion under the distribution the
engine sampled it from (logits / T), so its log-probs equal the engine's at any temperature."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path

import pytest
import torch

from azr.contracts.trainer import RewardBatch, RewardSample
from azr.core.tasks import GROUPS
from services.inference.transformers_engine import TransformersEngine
from services.trainer.loss import LossConfig
from services.trainer.policy import load_model
from services.trainer.update import Updater

PROMPTS = ["def f(a):\n    return a", "The quick brown fox jumps over the lazy dog and then"]


def _engine_batch(model_dir: Path, temperature: float, tag: float | None) -> RewardBatch:
    """Completions sampled by the real inference engine at `temperature`, with its log-probs;
    the samples say they were drawn at `tag` (None: the field left out, as today's writers do)."""
    engine = TransformersEngine(model_dir, device="cpu", max_batch=8)
    asyncio.run(engine.start())
    try:
        out = asyncio.run(
            engine.generate(PROMPTS, n=3, temperature=temperature, max_tokens=12, seed=3)
        )
    finally:
        asyncio.run(engine.close())
    samples = []
    for k, sample in enumerate(s for per in out for s in per):
        task_type, role = GROUPS[k % len(GROUPS)]
        fields = {
            "task_type": task_type,
            "role": role,
            "prompt_token_ids": sample.prompt_token_ids,
            "completion_token_ids": sample.completion_token_ids,
            "sampling_logprobs": sample.logprobs,
            "reward": float(k % 3) - 1.0,
        }
        if tag is not None:
            fields["temperature"] = tag
        samples.append(RewardSample.model_validate(fields))
    return RewardBatch(run_id="r", step=1, batch_id="b", weight_version=0, samples=samples)


def _mismatch(model: torch.nn.Module, batch: RewardBatch) -> float:
    """The trainer's own measure of |log pi_old - log pi_sampler| over the batch's tokens."""
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    upd = Updater(model, opt, LossConfig(entropy_coef=0.0), 4096, 1.0, torch.device("cpu"))
    return upd.step(batch).metrics["mismatch_abs"]


@pytest.mark.parametrize("temperature", [0.5, 1.7])
def test_trainer_logprobs_equal_the_engines_at_the_sampling_temperature(
    tiny_model_dir: Path, temperature: float
) -> None:
    model = load_model(tiny_model_dir, torch.device("cpu"))
    batch = _engine_batch(tiny_model_dir, temperature, tag=temperature)
    assert batch.n_response_tokens > 20
    assert all(s.temperature == temperature for s in batch.samples)
    # Scored at the sampling temperature: the engine's numbers, up to padding round-off.
    assert _mismatch(copy.deepcopy(model), batch) < 5e-4
    # The same tokens scored at T = 1 (what the trainer did before): far off. This is what
    # would make the ratio and the importance weights wrong.
    untempered = batch.model_copy(
        update={"samples": [s.model_copy(update={"temperature": 1.0}) for s in batch.samples]}
    )
    assert _mismatch(copy.deepcopy(model), untempered) > 0.05


def test_temperature_travels_in_the_batch_json_and_defaults_to_one() -> None:
    base = {
        "task_type": "deduction",
        "role": "solve",
        "prompt_token_ids": [1, 2],
        "completion_token_ids": [3],
        "reward": 1.0,
    }
    assert RewardSample.model_validate(base).temperature == 1.0
    s = RewardSample.model_validate({**base, "temperature": 0.6})
    assert RewardSample.model_validate_json(s.model_dump_json()).temperature == 0.6
    for bad in (0.0, -1.0, 9.0):
        with pytest.raises(ValueError, match="temperature"):
            RewardSample.model_validate({**base, "temperature": bad})
