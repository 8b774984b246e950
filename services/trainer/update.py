"""One reward batch -> one optimizer step: TRR++ advantages, samples that share a prompt packed
into one row, token-budget micro-batches with gradient accumulation over the whole batch (each
token weighted as the loss aggregation says), grad-norm clipping, AdamW."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from azr.contracts.trainer import RewardBatch
from azr.core.tasks import Role
from azr.core.trrpp import loss_token_weights, per_task_groups, trrpp_advantages
from azr.settings import LossAggregation
from services.trainer.distributed import DistContext, all_sum
from services.trainer.loss import LossConfig, policy_loss
from services.trainer.packing import PACKABLE_ATTENTION, Row, micro_batch, pack_rows
from services.trainer.policy import TokenStats, response_token_stats

log = logging.getLogger(__name__)

# Test-only hook: seconds to sleep before each micro-batch, so a test can kill the process in
# the middle of an update deterministically (tests/trainer/test_crash.py). Unset in production.
TEST_SLEEP_ENV = "AZR_TRAINER_TEST_SLEEP_S"


class BatchRejected(ValueError):
    """The batch is well-formed JSON but cannot be trained on (e.g. token ids beyond the
    vocabulary); it goes to the dead-letter stream."""


def batch_advantages(batch: RewardBatch, solver_baseline: str = "task_role") -> list[float]:
    """One scalar per sample from the core's TRR++ (one baseline per task x role group,
    token-weighted whitening); every response token of sample i gets A_i. With
    `solver_baseline="task"` the solver samples of one task share their own baseline."""
    groups = [s.group for s in batch.samples]
    if solver_baseline == "task":
        keys = [s.task_id if s.role is Role.SOLVE else None for s in batch.samples]
        groups = per_task_groups(groups, keys)
    return trrpp_advantages(
        [s.reward for s in batch.samples],
        groups,
        [len(s.completion_token_ids) for s in batch.samples],
    )


def plan_micro_batches(lengths: list[int], budget: int) -> list[list[int]]:
    """Group sequence indices so each micro-batch's padded size (rows x longest) fits `budget`.

    Sorting by length keeps padding small; a sequence longer than the budget goes alone;
    length 0 means "nothing to train" and is left out.
    """
    order = sorted((i for i in range(len(lengths)) if lengths[i] > 0), key=lambda i: -lengths[i])
    out: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        width = max(longest, lengths[i])
        if current and width * (len(current) + 1) > budget:
            out.append(current)
            current, longest = [], 0
            width = lengths[i]
        current.append(i)
        longest = width
    if current:
        out.append(current)
    return out


def rank_share(plan: list[list[int]], rank: int, world: int) -> list[tuple[list[int], bool]]:
    """This rank's micro-batches (round-robin over the length-sorted plan) as (indices, counted).

    Under FSDP every rank must run the same number of forward/backward passes (each one
    gathers the layers collectively), so a rank short of work repeats a micro-batch with its
    loss multiplied by zero. World size 1: the whole plan, all counted.
    """
    mine = [(idx, True) for idx in plan[rank::world]]
    rounds = -(-len(plan) // world) if plan else 0
    while len(mine) < rounds:
        mine.append((plan[0], False))
    return mine


def group_stats(batch: RewardBatch, advantages: list[float]) -> dict[str, dict[str, float]]:
    per: dict[str, list[tuple[float, float]]] = {}
    for s, a in zip(batch.samples, advantages, strict=True):
        per.setdefault(s.group, []).append((s.reward, a))
    out = {}
    for g, pairs in sorted(per.items()):
        rewards = [p[0] for p in pairs]
        advs = [p[1] for p in pairs]
        out[g] = {
            "count": float(len(rewards)),
            "reward_mean": _mean(rewards),
            "reward_std": _std(rewards),
            "advantage_mean": _mean(advs),
            "advantage_std": _std(advs),
        }
    return out


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def _std(xs: list[float]) -> float:
    if len(xs) < 2:
        return 0.0
    m = _mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


@dataclass
class StepResult:
    metrics: dict[str, float]
    groups: dict[str, dict[str, float]] = field(default_factory=dict)


class Updater:
    """Holds the model, its optimizer and the loss settings; `step` trains on one batch."""

    def __init__(
        self,
        model: Any,
        optimizer: torch.optim.Optimizer,
        loss_cfg: LossConfig,
        micro_batch_tokens: int,
        grad_clip: float,
        device: torch.device,
        amp_dtype: torch.dtype | None = None,
        ref_model: Any | None = None,
        pad_id: int = 0,
        base_lr: float | None = None,
        dist: DistContext | None = None,
        forward: Any | None = None,
        ref_forward: Any | None = None,
        solver_baseline: str = "task_role",
        loss_aggregation: LossAggregation = "token_mean",
        pack_prompts: bool = True,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.loss_cfg = loss_cfg
        self.micro_batch_tokens = micro_batch_tokens
        self.grad_clip = grad_clip
        self.device = device
        self.amp_dtype = amp_dtype
        self.ref_model = ref_model
        self.pad_id = pad_id
        # The configured rate: a batch without a per-run `lr` trains at it (the optimizer's
        # saved param groups may hold the last run's rate).
        self.base_lr = base_lr if base_lr is not None else optimizer.param_groups[0]["lr"]
        self.solver_baseline = solver_baseline
        self.loss_aggregation: LossAggregation = loss_aggregation
        # On N ranks: the FSDP root (sharded.ResponseStats) replaces the direct calls.
        self.dist = dist or DistContext()
        self.forward = forward
        self.ref_forward = ref_forward
        self.attention = attention_implementation(model)
        self.pack_prompts = pack_prompts and self.attention in PACKABLE_ATTENTION
        if pack_prompts and not self.pack_prompts:
            log.warning("attention %r takes no packed mask: one row per sample", self.attention)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def check(self, batch: RewardBatch) -> None:
        vocab = self.model.get_input_embeddings().weight.shape[0]
        for i, s in enumerate(batch.samples):
            top = max(s.prompt_token_ids + s.completion_token_ids)
            if top >= vocab:
                raise BatchRejected(f"samples[{i}] has token id {top} >= vocabulary size {vocab}")

    def step(
        self, batch: RewardBatch, on_micro_batch: Callable[[int, int], None] | None = None
    ) -> StepResult:
        self.check(batch)
        t0 = time.perf_counter()
        hp = batch.hparams
        lr = hp.lr if hp is not None and hp.lr is not None else self.base_lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss_cfg = self.loss_cfg
        if hp is not None and hp.entropy_coef is not None:
            loss_cfg = dataclasses.replace(loss_cfg, entropy_coef=hp.entropy_coef)
        baseline = self.solver_baseline
        if hp is not None and hp.solver_baseline is not None:
            baseline = hp.solver_baseline
        advantages = batch_advantages(batch, baseline)
        aggregation = self.loss_aggregation
        if hp is not None and hp.loss_aggregation is not None:
            aggregation = hp.loss_aggregation
        weights = loss_token_weights(
            [s.group for s in batch.samples],
            [len(s.completion_token_ids) for s in batch.samples],
            aggregation,
        )
        total_response = batch.n_response_tokens
        # Samples without completion tokens have nothing to train (and TRR++ gave them 0).
        rows = pack_rows(
            [s.prompt_token_ids for s in batch.samples],
            [s.completion_token_ids for s in batch.samples],
            self.micro_batch_tokens,
            share=self.pack_prompts,
        )
        plan = plan_micro_batches([len(r) for r in rows], self.micro_batch_tokens)
        share = rank_share(plan, self.dist.rank, self.dist.world_size)
        sleep_s = float(os.environ.get(TEST_SLEEP_ENV, "0") or 0)

        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        loss_total = 0.0
        for k, (idx, counted) in enumerate(share):
            if on_micro_batch:
                on_micro_batch(k, len(share))
            if sleep_s:
                time.sleep(sleep_s)
            loss, stats = self._micro_batch(
                batch, [rows[i] for i in idx], advantages, weights, loss_cfg
            )
            if not counted:  # a filler so every rank runs as many FSDP passes as the others
                loss, stats = loss * 0.0, dict.fromkeys(stats, 0.0)
            # FSDP averages gradients over ranks; scaling by the world size makes it the sum.
            (loss * self.dist.world_size).backward()  # type: ignore[no-untyped-call]
            loss_total += float(loss.detach())
            for key, v in stats.items():
                sums[key] = sums.get(key, 0.0) + v
        if self.dist.sharded:
            sums = all_sum({**sums, "_loss": loss_total}, self.dist)
            loss_total = sums.pop("_loss")

        params = [p for p in self.model.parameters() if p.requires_grad]
        norm = torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        if hasattr(norm, "full_tensor"):  # a DTensor under FSDP
            norm = norm.full_tensor()
        grad_norm = float(norm)
        if math.isfinite(grad_norm):
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        elapsed = time.perf_counter() - t0

        known = sums.get("known_tokens", 0.0)
        metrics = {
            "loss": loss_total,
            "pg_loss": sums["surrogate_sum"] / total_response,
            "entropy": sums["entropy_sum"] / total_response,
            "grad_norm": grad_norm,
            "clip_fraction": sums["clipped_tokens"] / total_response,
            "mismatch_abs": sums["mismatch_abs_sum"] / known if known else 0.0,
            "mismatch_kl": sums["mismatch_kl_sum"] / known if known else 0.0,
            "tis_truncated_fraction": sums["truncated_tokens"] / known if known else 0.0,
            "tokens": float(batch.n_tokens),
            "response_tokens": float(total_response),
            "tokens_per_s": batch.n_tokens / elapsed,
            "step_time_s": elapsed,
            "micro_batches": float(len(plan)),
            "rows": float(len(rows)),
            "forward_tokens": float(sum(len(r) for r in rows)),
            "reward_mean": _mean([s.reward for s in batch.samples]),
            "skipped_nonfinite": 0.0 if math.isfinite(grad_norm) else 1.0,
            "lr": float(lr),
            "solver_token_weight": sum(
                w * len(s.completion_token_ids)
                for w, s in zip(weights, batch.samples, strict=True)
                if s.role is Role.SOLVE
            ),
        }
        return StepResult(metrics=metrics, groups=group_stats(batch, advantages))

    def _micro_batch(
        self,
        batch: RewardBatch,
        rows: list[Row],
        advantages: list[float],
        weights: list[float],
        loss_cfg: LossConfig,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        mb = micro_batch(rows, self.pad_id, self.attention).to(self.device)
        samples = [batch.samples[i] for i in mb.samples]

        def per_token(values: list[float]) -> torch.Tensor:
            """A sample's value repeated over its completion tokens, in the micro-batch's order."""
            return torch.cat(
                [
                    torch.full((len(s.completion_token_ids),), v)
                    for s, v in zip(samples, values, strict=True)
                ]
            ).to(self.device, torch.float32)

        adv = per_token([advantages[i] for i in mb.samples])
        token_weight = per_token([weights[i] for i in mb.samples])
        temps = per_token([s.temperature for s in samples])
        sampling = torch.cat(
            [
                torch.tensor(s.sampling_logprobs)
                if s.sampling_logprobs is not None
                else torch.full((len(s.completion_token_ids),), math.nan)
                for s in samples
            ]
        ).to(self.device, torch.float32)

        bonus = loss_cfg.entropy_coef != 0.0
        with self._autocast():
            # Every log-prob (pi_theta, pi_old, pi_ref) at the sample's sampling temperature.
            if self.forward is not None:
                stats = TokenStats(*self.forward(mb, entropy_grad=bonus, temperature=temps))
            else:
                stats = response_token_stats(self.model, mb, entropy_grad=bonus, temperature=temps)
            ref_logp = None
            if self.ref_forward is not None and loss_cfg.kl_coef:
                with torch.no_grad():
                    ref_logp = self.ref_forward(mb, with_entropy=False, temperature=temps)[0]
            elif self.ref_model is not None and loss_cfg.kl_coef:
                with torch.no_grad():
                    ref = response_token_stats(
                        self.ref_model, mb, with_entropy=False, temperature=temps
                    )
                    ref_logp = ref.logp
        # One update per batch: the parameters that produced `logp` are pi_old, so the old
        # log-probs are these values without gradient (a second forward pass would be identical).
        old_logp = stats.logp.detach()
        return policy_loss(
            stats.logp, old_logp, sampling, adv, stats.entropy, ref_logp, loss_cfg, token_weight
        )


def attention_implementation(model: Any) -> str:
    """The model's attention kernel ("sdpa", "eager", "flash_attention_2", ...); the FSDP root
    and PEFT wrappers are looked through."""
    inner = getattr(model, "model", model) if not hasattr(model, "config") else model
    config = getattr(inner, "config", None)
    return str(getattr(config, "_attn_implementation", None) or "sdpa")
