"""Reward-batch schema: validation rules, and malformed entries going to the dead-letter stream
without stopping the trainer."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from azr.contracts.trainer import RewardBatch, RewardSample, encode_batch, publish_reward_batch
from tests.trainer.helpers import make_batch


def sample(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "task_type": "deduction",
        "role": "solve",
        "prompt_token_ids": [5, 6, 7],
        "completion_token_ids": [8, 9],
        "sampling_logprobs": [-0.5, -1.5],
        "reward": 1.0,
    }
    base.update(kw)
    return base


def batch(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "run_id": "r",
        "step": 0,
        "batch_id": "b",
        "weight_version": 0,
        "samples": [sample()],
    }
    base.update(kw)
    return base


def test_valid_batch_round_trips() -> None:
    b = make_batch(per_group=2)
    again = RewardBatch.model_validate_json(b.model_dump_json())
    assert again == b
    assert set(again.groups()) == {s.group for s in b.samples}
    assert len(again.groups()) == 6
    assert again.n_response_tokens == sum(len(s.completion_token_ids) for s in b.samples)


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        (batch(samples=[]), "samples"),
        (batch(batch_id=""), "batch_id"),
        (batch(step=-1), "step"),
        (batch(unexpected=1), "unexpected"),
        (batch(samples=[sample(task_type="translation")]), "task_type"),
        (batch(samples=[sample(role="judge")]), "role"),
        (batch(samples=[sample(completion_token_ids=[], sampling_logprobs=None)]), "nothing to"),
        (batch(samples=[sample(prompt_token_ids=[1, -2])]), "negative token id"),
        (batch(samples=[sample(sampling_logprobs=[-1.0])]), "1 entries for 2 completion tokens"),
        (batch(samples=[sample(sampling_logprobs=[-1.0, 0.7])]), "<= 0"),
        (batch(samples=[sample(reward=float("nan"))]), "finite"),
    ],
)
def test_invalid_batches_name_the_problem(bad: dict[str, object], needle: str) -> None:
    with pytest.raises(ValidationError) as info:
        RewardBatch.model_validate_json(json.dumps(bad))
    assert needle in str(info.value)


def test_logprobs_are_optional() -> None:
    assert RewardSample.model_validate(sample(sampling_logprobs=None)).sampling_logprobs is None
    # An engine that returned no log-probs at all: unknown, not a malformed batch.
    assert RewardSample.model_validate(sample(sampling_logprobs=[])).sampling_logprobs is None


def test_an_empty_completion_does_not_sink_the_batch() -> None:
    b = RewardBatch.model_validate(
        batch(samples=[sample(), sample(completion_token_ids=[], sampling_logprobs=[])])
    )
    assert b.n_response_tokens == 2


def test_publish_writes_one_stream_entry(redis_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import redis

    from tests.trainer.helpers import trainer_settings

    settings = trainer_settings(tmp_path, tmp_path, redis_url)
    r = redis.Redis.from_url(redis_url)
    b = make_batch()
    entry = publish_reward_batch(r, settings, b)
    [(got_id, fields)] = r.xrange(settings.trainer.stream)
    assert got_id.decode() == entry
    assert {k.decode(): v.decode() for k, v in fields.items()} == encode_batch(b)
    r.close()
