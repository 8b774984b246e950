"""Shared helpers of the trainer tests: settings on private stream names, batch builders."""

from __future__ import annotations

import random
import uuid
from pathlib import Path
from typing import Any

from azr.contracts.trainer import RewardBatch, RewardSample
from azr.core.tasks import GROUPS
from azr.settings import Settings, TrainerSettings


def trainer_settings(data_dir: Path, model_dir: Path, redis_url: str, **overrides: Any) -> Settings:
    """Settings whose stream/keys are unique, so tests can share one Redis server."""
    tag = uuid.uuid4().hex[:10]
    fields: dict[str, Any] = {
        "model": str(model_dir),
        "stream": f"test:{tag}:batches",
        "dead_letter_stream": f"test:{tag}:dead",
        "versions_stream": f"test:{tag}:versions",
        "latest_key": f"test:{tag}:latest",
        "batch_versions_key": f"test:{tag}:batch-versions",
        "dead_batches_key": f"test:{tag}:dead-batches",
        "lr": 1e-3,
        "micro_batch_tokens": 256,
    }
    fields.update(overrides)
    return Settings(data_dir=data_dir, redis_url=redis_url, trainer=TrainerSettings(**fields))


def settings_env(settings: Settings) -> dict[str, str]:
    """The same settings as AZR_ environment variables, for a trainer subprocess."""
    env = {"AZR_DATA_DIR": str(settings.data_dir), "AZR_REDIS_URL": settings.redis_url or ""}
    for name, value in settings.trainer.model_dump().items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            value = "[" + ",".join(str(v) for v in value) + "]"
        env[f"AZR_TRAINER__{name.upper()}"] = (
            str(value).lower() if isinstance(value, bool) else str(value)
        )
    return env


def make_batch(
    batch_id: str | None = None,
    per_group: int = 3,
    seed: int = 0,
    vocab: int = 1000,
    weight_version: int = 0,
    with_logprobs: bool = True,
) -> RewardBatch:
    """Random token sequences with varied rewards in all six task x role groups."""
    rng = random.Random(seed)
    samples = []
    for task_type, role in GROUPS:
        for _ in range(per_group):
            n_c = rng.randint(2, 12)
            samples.append(
                RewardSample(
                    task_type=task_type,
                    role=role,
                    prompt_token_ids=[rng.randrange(3, vocab) for _ in range(rng.randint(3, 20))],
                    completion_token_ids=[rng.randrange(3, vocab) for _ in range(n_c)],
                    sampling_logprobs=[-rng.uniform(5, 9) for _ in range(n_c)]
                    if with_logprobs
                    else None,
                    reward=rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0]),
                )
            )
    return RewardBatch(
        run_id="run-test",
        step=seed,
        batch_id=batch_id or f"batch-{uuid.uuid4().hex[:8]}",
        weight_version=weight_version,
        samples=samples,
    )


def sample_completions(
    model_dir: Path, prompt: list[int], n: int, length: int, top_k: int, seed: int
) -> tuple[list[list[int]], list[list[float]]]:
    """Fresh samples from a checkpoint: `n` completions of `length` tokens at temperature 1
    from the top-k tokens, with the sampler's log-probs (top-k renormalised, as an engine's
    processed log-probs are). A few lines of sampling instead of `generate`, which computes
    full-sequence logits over the 49k vocabulary at every step."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    gen = torch.Generator().manual_seed(seed)
    seq = torch.tensor([prompt] * n)
    logprobs = []
    with torch.no_grad():
        for _ in range(length):
            logits = model(seq, logits_to_keep=1).logits[:, -1].float()
            top = torch.topk(logits, top_k)
            lp = torch.log_softmax(top.values, -1)
            pick = torch.multinomial(lp.exp(), 1, generator=gen)
            seq = torch.cat([seq, top.indices.gather(-1, pick)], 1)
            logprobs.append(lp.gather(-1, pick))
    completions = seq[:, len(prompt) :].tolist()
    return completions, torch.cat(logprobs, 1).tolist()
