"""The reward batch: what the gateway writes to the trainer's Redis stream (docs/reward-batch.md).

One stream entry carries one batch as JSON in the field ``batch``. The gateway imports
`RewardBatch`, `RewardSample` and `publish_reward_batch` from here.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from azr.core.tasks import Role, TaskType, group_key
from azr.settings import LossAggregation, Settings

SCHEMA_VERSION = 1
# Field of the stream entry that holds the JSON batch.
BATCH_FIELD = "batch"


class RewardSample(BaseModel):
    """One sampled sequence with its scalar reward."""

    model_config = ConfigDict(extra="forbid")

    task_type: TaskType
    role: Role
    prompt_token_ids: list[int] = Field(min_length=1)
    completion_token_ids: list[int] = Field(
        description="may be empty: such a sample carries no tokens and is left out of the update"
    )
    sampling_logprobs: list[float] | None = Field(
        default=None,
        description="engine log-prob of each completion token; null or [] when unknown",
    )
    reward: float
    temperature: float = Field(
        default=1.0,
        gt=0.0,
        le=5.0,
        description="sampling temperature of the completion; the trainer scores it at this T",
    )
    weight_version: int | None = Field(
        default=None, ge=0, description="version that sampled it, when it differs per sample"
    )
    task_id: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _consistent(self) -> RewardSample:
        if not math.isfinite(self.reward):
            raise ValueError("reward must be a finite number")
        for name in ("prompt_token_ids", "completion_token_ids"):
            if any(t < 0 for t in getattr(self, name)):
                raise ValueError(f"{name} contains a negative token id")
        if self.sampling_logprobs == [] and self.completion_token_ids:
            self.sampling_logprobs = None  # an engine that returned no log-probs: unknown
        lps = self.sampling_logprobs
        if lps is not None:
            if len(lps) != len(self.completion_token_ids):
                raise ValueError(
                    f"sampling_logprobs has {len(lps)} entries for "
                    f"{len(self.completion_token_ids)} completion tokens"
                )
            # A log-probability is <= 0; a small slack absorbs engine rounding.
            if any(not math.isfinite(x) or x > 1e-3 for x in lps):
                raise ValueError("sampling_logprobs must be finite and <= 0")
        return self

    @property
    def group(self) -> str:
        return group_key(self.task_type, self.role)

    @property
    def n_tokens(self) -> int:
        return len(self.prompt_token_ids) + len(self.completion_token_ids)


class TrainHparams(BaseModel):
    """Per-run overrides of the trainer's hyper-parameters, applied to this batch's update
    only; a field left out keeps the trainer's own setting (`AZR_TRAINER__*`)."""

    model_config = ConfigDict(extra="forbid")

    lr: float | None = Field(default=None, gt=0.0, le=1.0, description="AdamW learning rate")
    entropy_coef: float | None = Field(
        default=None, ge=0.0, le=1.0, description="entropy bonus coefficient"
    )
    solver_baseline: Literal["task_role", "task"] | None = Field(
        default=None,
        description="task_role: TRR++ (one baseline per task x role); task: solver samples "
        "of one task (task_id) share their own baseline",
    )
    loss_aggregation: LossAggregation | None = Field(
        default=None,
        description="token_mean: the batch's token mean (the reference); group_token_mean: "
        "the token mean of each task x role group, averaged over the groups",
    )


class RewardBatch(BaseModel):
    """All samples of one self-play step; the trainer turns it into one optimizer step."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    run_id: str = Field(min_length=1, max_length=200)
    step: int = Field(ge=0)
    batch_id: str = Field(
        min_length=1, max_length=200, description="unique per batch; redelivery is idempotent"
    )
    weight_version: int = Field(ge=0, description="weight version that generated the samples")
    samples: list[RewardSample] = Field(min_length=1)
    hparams: TrainHparams | None = Field(
        default=None, description="the run's trainer hyper-parameters, when it sets any"
    )

    @model_validator(mode="after")
    def _has_tokens(self) -> RewardBatch:
        if not any(s.completion_token_ids for s in self.samples):
            raise ValueError("no sample has completion tokens: nothing to train on")
        return self

    def groups(self) -> dict[str, int]:
        """Sample count per task x role group."""
        out: dict[str, int] = {}
        for s in self.samples:
            out[s.group] = out.get(s.group, 0) + 1
        return out

    @property
    def n_tokens(self) -> int:
        return sum(s.n_tokens for s in self.samples)

    @property
    def n_response_tokens(self) -> int:
        return sum(len(s.completion_token_ids) for s in self.samples)


def encode_batch(batch: RewardBatch) -> dict[str, str]:
    """The stream entry's fields for a batch."""
    return {"batch_id": batch.batch_id, BATCH_FIELD: batch.model_dump_json()}


def publish_reward_batch(redis: Any, settings: Settings, batch: RewardBatch) -> str:
    """Append a batch to the trainer's stream; returns the stream entry id.

    Publishing the same batch_id twice is harmless: the trainer acknowledges the second copy
    without a second update.
    """
    entry_id = redis.xadd(settings.trainer.stream, encode_batch(batch))
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
