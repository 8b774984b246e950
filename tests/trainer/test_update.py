"""The update itself: the loss terms, TRR++ wiring, micro-batching with accumulation."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from azr.contracts.trainer import RewardBatch, RewardSample, TrainHparams
from azr.core.tasks import GROUPS, Role, TaskType
from services.trainer.loss import LossConfig, policy_loss
from services.trainer.policy import load_model
from services.trainer.update import Updater, batch_advantages, plan_micro_batches
from tests.trainer.helpers import make_batch


def test_loss_gradient_per_token() -> None:
    """d loss / d logp for each token: -A * min(exp(old - sampling), cap); zero where clipped."""
    old = torch.tensor([-1.0, -2.0, -3.0, -1.5, -0.7])
    logp = old.clone()
    logp[4] = old[4] + 0.5  # ratio e^0.5 > 1 + 0.2: clipped for a positive advantage
    logp.requires_grad_(True)
    sampling = torch.tensor([-6.0, -1.5, math.nan, -1.5, -0.7])
    adv = torch.tensor([1.0, -2.0, 0.5, 3.0, 1.0])
    cfg = LossConfig(clip_ratio=0.2, entropy_coef=0.0, tis_cap=2.0)
    loss, stats = policy_loss(logp, old, sampling, adv, None, None, cfg)
    loss.backward()
    weights = [min(math.exp(-1.0 + 6.0), 2.0), math.exp(-2.0 + 1.5), 1.0, 1.0]
    expected = [-a * w for a, w in zip(adv.tolist()[:4], weights, strict=True)] + [0.0]
    assert logp.grad is not None
    assert logp.grad.tolist() == pytest.approx(expected, rel=1e-5)
    assert stats["truncated_tokens"] == 1 and stats["known_tokens"] == 4
    assert stats["clipped_tokens"] == 1
    assert stats["mismatch_abs_sum"] == pytest.approx(5.0 + 0.5 + 0.0 + 0.0)


def test_entropy_bonus_and_kl() -> None:
    logp = torch.tensor([-1.0, -2.0], requires_grad=True)
    ent = torch.tensor([3.0, 4.0], requires_grad=True)
    ref = torch.tensor([-1.5, -1.0])
    zero = torch.zeros(2)
    cfg = LossConfig(entropy_coef=0.1, kl_coef=0.5)
    loss, _ = policy_loss(logp, logp.detach(), zero * math.nan, zero, ent, ref, cfg)
    d = ref - logp.detach()
    kl = (torch.exp(d) - d - 1).sum()
    assert float(loss) == pytest.approx(-0.1 * 7.0 + 0.5 * float(kl))
    loss.backward()
    assert ent.grad is not None and ent.grad.tolist() == pytest.approx([-0.1, -0.1])
    # d/dlogp of kl * (e^(ref-logp) - (ref-logp) - 1) = kl * (1 - e^(ref-logp))
    assert logp.grad is not None
    assert logp.grad.tolist() == pytest.approx((0.5 * (1 - torch.exp(d))).tolist(), rel=1e-5)


def test_advantages_are_whitened_per_group_with_token_weights() -> None:
    batch = make_batch(per_group=5, seed=7)
    got = batch_advantages(batch)
    # Independent computation: expand every sequence to its tokens, whiten per group.
    for key in {s.group for s in batch.samples}:
        idx = [i for i, s in enumerate(batch.samples) if s.group == key]
        tokens = np.concatenate(
            [
                np.full(len(batch.samples[i].completion_token_ids), batch.samples[i].reward)
                for i in idx
            ]
        )
        mu, var = tokens.mean(), tokens.var(ddof=1)
        for i in idx:
            assert got[i] == pytest.approx((batch.samples[i].reward - mu) / math.sqrt(var + 1e-8))


def test_plan_micro_batches_respects_budget() -> None:
    lengths = [5, 40, 7, 33, 12, 90, 8, 8, 21, 0]
    plan = plan_micro_batches(lengths, budget=64)
    assert sorted(i for mb in plan for i in mb) == list(range(len(lengths) - 1))
    for mb in plan:
        assert len(mb) * max(lengths[i] for i in mb) <= 64 or len(mb) == 1
    assert [5] in plan  # longer than the budget: alone


def _updater(model: torch.nn.Module, budget: int, entropy: float = 0.0) -> Updater:
    # Plain SGD with lr 1: the parameter change is exactly minus the accumulated gradient.
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    return Updater(model, opt, LossConfig(entropy_coef=entropy), budget, 1e9, torch.device("cpu"))


def test_micro_batching_gives_the_same_step(tiny_model_dir: Path) -> None:
    base = load_model(tiny_model_dir, torch.device("cpu"))
    batch = make_batch(per_group=2, seed=2)
    models = [copy.deepcopy(base) for _ in range(2)]
    r_small = _updater(models[0], budget=64, entropy=0.01).step(batch)
    r_whole = _updater(models[1], budget=100_000, entropy=0.01).step(batch)
    assert r_small.metrics["micro_batches"] >= 4 and r_whole.metrics["micro_batches"] == 1
    assert r_small.metrics["loss"] == pytest.approx(r_whole.metrics["loss"], rel=1e-4)
    for (name, a), b, p0 in zip(
        models[0].named_parameters(), models[1].parameters(), base.parameters(), strict=True
    ):
        assert not torch.equal(a, p0), name
        torch.testing.assert_close(a - p0, b - p0, rtol=1e-3, atol=1e-7)


def test_group_relative_baseline(tiny_model_dir: Path) -> None:
    """Rewards constant inside each group but different across groups: TRR++ gives zero
    advantages, so without entropy bonus the update is exactly zero (a global baseline would
    not be)."""
    model = load_model(tiny_model_dir, torch.device("cpu"))
    before = copy.deepcopy(model.state_dict())
    samples = [
        RewardSample(
            task_type=t,
            role=r,
            prompt_token_ids=[5, 6, 7],
            completion_token_ids=[8 + k, 9],
            reward=float(g),
        )
        for g, (t, r) in enumerate(GROUPS)
        for k in range(3)
    ]
    batch = RewardBatch(run_id="r", step=0, batch_id="b", weight_version=0, samples=samples)
    assert batch_advantages(batch) == [0.0] * len(samples)
    result = _updater(model, 4096).step(batch)
    assert result.metrics["grad_norm"] == 0.0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert result.groups["induction/solve"]["reward_mean"] == 5.0


def test_empty_completions_are_left_out(tiny_model_dir: Path) -> None:
    model = load_model(tiny_model_dir, torch.device("cpu"))
    batch = make_batch(per_group=2, seed=4)
    data = batch.model_dump()
    data["samples"][0]["completion_token_ids"] = []
    data["samples"][0]["sampling_logprobs"] = []
    with_empty = RewardBatch.model_validate(data)
    result = _updater(model, 4096).step(with_empty)
    assert result.metrics["response_tokens"] == batch.n_response_tokens - len(
        batch.samples[0].completion_token_ids
    )
    assert result.metrics["grad_norm"] > 0


def test_a_run_sets_its_own_learning_rate_per_batch(tiny_model_dir: Path) -> None:
    """`hparams.lr` of a batch (a run's `lr` setting) replaces the configured rate for that
    update only: with SGD the step is exactly lr x gradient, so it halves at half the rate."""
    base = load_model(tiny_model_dir, torch.device("cpu"))
    batch = make_batch(per_group=2, seed=5)
    tuned = batch.model_copy(update={"hparams": TrainHparams(lr=0.25, entropy_coef=0.0)})
    deltas = []
    for b in (batch, tuned):
        model = copy.deepcopy(base)
        upd = _updater(model, 4096)  # SGD at lr 1.0
        result = upd.step(b)
        assert result.metrics["lr"] == (1.0 if b is batch else 0.25)
        deltas.append([p - p0 for p, p0 in zip(model.parameters(), base.parameters(), strict=True)])
        # the next batch without hparams trains at the configured rate again
        upd.step(make_batch(per_group=1, seed=6))
        assert upd.optimizer.param_groups[0]["lr"] == 1.0
    for full, quarter in zip(*deltas, strict=True):
        # fp32 parameters: the difference p - p0 carries their rounding (~6e-8)
        torch.testing.assert_close(quarter, 0.25 * full, rtol=1e-3, atol=3e-7)


def test_per_task_solver_baseline_from_the_batch(tiny_model_dir: Path) -> None:
    """Answers to one task, all right, against answers to another, all wrong: TRR++'s shared
    baseline trains on them; the per-task baseline the run asks for leaves nothing to learn."""
    samples = [
        RewardSample(
            task_type=TaskType.DEDUCTION,
            role=Role.SOLVE,
            prompt_token_ids=[5, 6, 7],
            completion_token_ids=[8 + k, 9],
            reward=reward,
            task_id=task,
        )
        for task, reward in (("t1", 1.0), ("t2", -0.5))
        for k in range(2)
    ]
    shared = RewardBatch(run_id="r", step=0, batch_id="b", weight_version=0, samples=samples)
    assert all(a != 0.0 for a in batch_advantages(shared))
    per_task = shared.model_copy(update={"hparams": TrainHparams(solver_baseline="task")})
    assert batch_advantages(per_task, "task") == [0.0] * 4
    model = load_model(tiny_model_dir, torch.device("cpu"))
    before = copy.deepcopy(model.state_dict())
    result = _updater(model, 4096).step(per_task)
    assert result.metrics["grad_norm"] == 0.0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert _updater(model, 4096).step(shared).metrics["grad_norm"] > 0.0


def test_group_token_mean_gives_each_group_the_same_pull(tiny_model_dir: Path) -> None:
    """Ten-token proposals and two-token answers. With SGD and no clipping the step is linear
    in the loss: under `group_token_mean` the mixed batch's step is the mean of the two groups'
    own steps; under the batch token mean the long proposals weigh five times as much."""

    def sample(role: Role, n: int, k: int, reward: float) -> RewardSample:
        return RewardSample(
            task_type=TaskType.DEDUCTION,
            role=role,
            prompt_token_ids=[5, 6, 7],
            completion_token_ids=[(8 + k + j) % 50 + 3 for j in range(n)],
            reward=reward,
        )

    proposals = [sample(Role.PROPOSE, 10, k, r) for k, r in enumerate((0.75, 0.0, 0.25))]
    answers = [sample(Role.SOLVE, 2, k, r) for k, r in enumerate((1.0, -0.5, -0.5, 1.0))]
    base = load_model(tiny_model_dir, torch.device("cpu"))

    def step(samples: list[RewardSample], aggregation: str | None) -> list[torch.Tensor]:
        hparams = TrainHparams(entropy_coef=0.0, loss_aggregation=aggregation)
        batch = RewardBatch(
            run_id="r", step=0, batch_id="b", weight_version=0, samples=samples, hparams=hparams
        )
        model = copy.deepcopy(base)
        result = _updater(model, 4096).step(batch)
        if aggregation == "group_token_mean" and len(samples) == 7:
            assert result.metrics["solver_token_weight"] == pytest.approx(0.5)
        return [p - p0 for p, p0 in zip(model.parameters(), base.parameters(), strict=True)]

    alone_p, alone_s = step(proposals, None), step(answers, None)
    grouped = step(proposals + answers, "group_token_mean")
    pooled = step(proposals + answers, "token_mean")
    for g, t, p, s in zip(grouped, pooled, alone_p, alone_s, strict=True):
        torch.testing.assert_close(g, 0.5 * (p + s), rtol=1e-3, atol=3e-7)
        torch.testing.assert_close(t, (30 * p + 8 * s) / 38, rtol=1e-3, atol=3e-7)
    # the two aggregations really differ on this batch
    assert any(not torch.allclose(g, t, atol=1e-6) for g, t in zip(grouped, pooled, strict=True))
