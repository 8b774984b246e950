"""Learning sanity through the real path: samples -> Redis stream -> trainer loop -> checkpoint
-> fresh samples from the announced weights. A toy verifiable reward (1 when the completion
contains a token whose id is a multiple of 8) must rise after a few TRR++ updates."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from azr.contracts.trainer import RewardBatch, RewardSample, publish_reward_batch
from azr.core.tasks import GROUPS
from tests.trainer.conftest import MakeService
from tests.trainer.helpers import sample_completions

pytestmark = pytest.mark.slow

PROMPT = [1, 520, 1000, 42, 7]
LENGTH, TOP_K = 4, 20


def reward(completion: list[int]) -> float:
    return 1.0 if any(t % 8 == 0 for t in completion) else 0.0


def mean_reward(model_dir: Path, seed: int) -> float:
    completions, _ = sample_completions(model_dir, PROMPT, 128, LENGTH, TOP_K, seed)
    return sum(map(reward, completions)) / len(completions)


def test_updates_raise_the_reward_of_fresh_samples(make_service: MakeService) -> None:
    svc, s = make_service(lr=1e-2, entropy_coef=0.0)
    stop = threading.Event()
    loop = threading.Thread(target=svc.run, args=(stop, 200), daemon=True)
    loop.start()
    try:

        def latest() -> dict[str, object]:
            return json.loads(svc.redis.get(s.trainer.latest_key))

        start = latest()
        assert start["version"] == 0
        before = mean_reward(Path(str(start["path"])), seed=1000)
        path = Path(str(start["path"]))
        for step in range(3):
            completions, logprobs = sample_completions(path, PROMPT, 64, LENGTH, TOP_K, seed=step)
            samples = [
                RewardSample(
                    task_type=GROUPS[i % 6][0],
                    role=GROUPS[i % 6][1],
                    prompt_token_ids=PROMPT,
                    completion_token_ids=c,
                    sampling_logprobs=lp,
                    reward=reward(c),
                )
                for i, (c, lp) in enumerate(zip(completions, logprobs, strict=True))
            ]
            batch = RewardBatch(
                run_id="learn",
                step=step,
                batch_id=f"learn-{step}",
                weight_version=step,
                samples=samples,
            )
            publish_reward_batch(svc.redis, s, batch)
            deadline = time.monotonic() + 120
            while latest()["version"] != step + 1:
                assert time.monotonic() < deadline, svc.status()
                time.sleep(0.1)
            path = Path(str(latest()["path"]))
        after = mean_reward(path, seed=1000)
    finally:
        stop.set()
        loop.join(timeout=60)
    assert svc.status()["counts"]["trained"] == 3
    print(f"mean reward of fresh samples: {before:.3f} -> {after:.3f}")
    assert after >= before + 0.2, (before, after)
