"""Shared prompts packed into one row: the same log-probs, the same update, fewer tokens."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest
import torch

from azr.contracts.trainer import RewardBatch, RewardSample
from azr.core.tasks import Role, TaskType
from services.trainer.loss import LossConfig
from services.trainer.packing import micro_batch, pack_rows
from services.trainer.policy import load_model, response_token_stats
from services.trainer.update import Updater


def _solver_batch(seed: int, tasks: int = 3, answers: int = 4, vocab: int = 1000) -> RewardBatch:
    """Several answers per task, as the solver's batches come: one prompt per task, answers of
    different lengths (one empty), mixed rewards."""
    rng = random.Random(seed)
    samples: list[RewardSample] = []
    for _ in range(tasks):
        prompt = [rng.randrange(3, vocab) for _ in range(rng.randint(9, 20))]
        for k in range(answers):
            n_c = 0 if (k == answers - 1 and not samples) else rng.randint(1, 7)
            samples.append(
                RewardSample(
                    task_type=TaskType.DEDUCTION,
                    role=Role.SOLVE,
                    prompt_token_ids=prompt,
                    completion_token_ids=[rng.randrange(3, vocab) for _ in range(n_c)],
                    sampling_logprobs=[-rng.uniform(0.5, 8) for _ in range(n_c)],
                    reward=float(rng.random() < 0.5),
                    temperature=0.7,
                )
            )
    rng.shuffle(samples)  # a task's answers need not be neighbours in the batch
    return RewardBatch(run_id="r", step=1, batch_id="b", weight_version=0, samples=samples)


def _token_logprobs(
    model: torch.nn.Module, batch: RewardBatch, share: bool, attention: str
) -> dict[int, torch.Tensor]:
    """Each sample's completion log-probs, from micro-batches of packed or one-sample rows."""
    rows = pack_rows(
        [s.prompt_token_ids for s in batch.samples],
        [s.completion_token_ids for s in batch.samples],
        budget=10_000,
        share=share,
    )
    mb = micro_batch(rows, pad_id=0, attention=attention)
    with torch.no_grad():
        logp = response_token_stats(model, mb, with_entropy=False, temperature=0.7).logp
    out, at = {}, 0
    for i in mb.samples:
        n = len(batch.samples[i].completion_token_ids)
        out[i] = logp[at : at + n]
        at += n
    assert at == len(logp)
    return out


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_each_completion_gets_the_logprobs_of_its_own_row(
    tiny_model_dir: Path, attention: str
) -> None:
    model = load_model(tiny_model_dir, torch.device("cpu"))
    model.set_attn_implementation(attention)
    batch = _solver_batch(seed=1)
    packed = _token_logprobs(model, batch, share=True, attention=attention)
    alone = _token_logprobs(model, batch, share=False, attention=attention)
    trained = {i for i, s in enumerate(batch.samples) if s.completion_token_ids}
    assert set(packed) == set(alone) == trained
    for i in trained:
        torch.testing.assert_close(packed[i], alone[i], rtol=1e-5, atol=1e-5)


def test_a_packed_update_equals_the_unpacked_one(tiny_model_dir: Path) -> None:
    base = load_model(tiny_model_dir, torch.device("cpu"))
    batch = _solver_batch(seed=2, tasks=4, answers=6)
    results, models = [], []
    for pack in (True, False):
        model = copy.deepcopy(base)
        # SGD with lr 1: the parameter change is minus the accumulated gradient itself.
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        upd = Updater(
            model,
            opt,
            LossConfig(entropy_coef=0.01),
            4096,
            1e9,
            torch.device("cpu"),
            solver_baseline="task",
            pack_prompts=pack,
        )
        results.append(upd.step(batch).metrics)
        models.append(model)
    packed, alone = results
    assert packed["rows"] == 4 and alone["rows"] == sum(
        1 for s in batch.samples if s.completion_token_ids
    )
    assert packed["forward_tokens"] < alone["forward_tokens"] / 2
    for key in ("loss", "pg_loss", "entropy", "grad_norm", "mismatch_abs"):
        assert packed[key] == pytest.approx(alone[key], rel=1e-4, abs=1e-6), key
    for (name, a), b, p0 in zip(
        models[0].named_parameters(), models[1].parameters(), base.parameters(), strict=True
    ):
        assert not torch.equal(a, p0), name
        torch.testing.assert_close(a - p0, b - p0, rtol=1e-3, atol=1e-7)


def test_rows_keep_every_sample_once_and_split_at_the_budget() -> None:
    prompts = [[1, 2, 3]] * 5 + [[4, 5]] * 2 + [[1, 2, 3]]
    completions = [[7] * n for n in (2, 3, 0, 4, 2, 1, 1, 5)]
    rows = pack_rows(prompts, completions, budget=10)
    assert sorted(i for r in rows for i in r.samples) == [0, 1, 3, 4, 5, 6, 7]  # 2 is empty
    for r in rows:
        assert len(r) <= 10
        assert all(prompts[i] == r.prompt for i in r.samples)
        assert r.completions == [completions[i] for i in r.samples]
    # 3 + 2 + 3 fits, + 4 does not: a second row for prompt [1, 2, 3] opens
    assert [r.samples for r in rows] == [[0, 1], [3, 4], [5, 6], [7]]


def test_a_completion_sees_its_prompt_and_itself_only() -> None:
    rows = pack_rows([[1, 2], [1, 2], [9]], [[3, 4], [5], [6]], budget=100)
    mb = micro_batch(rows, pad_id=0)
    mask = mb.attention_mask[:, 0]
    # row 0: tokens 1 2 | 3 4 | 5 ; row 1: 9 | 6 | padding
    assert mb.input_ids.tolist() == [[1, 2, 3, 4, 5], [9, 6, 0, 0, 0]]
    assert mb.position_ids is not None
    assert mb.position_ids[0].tolist() == [0, 1, 2, 3, 2]
    assert mask[0, 4].tolist() == [True, True, False, False, True]  # 5 sees the prompt, itself
    assert mask[0, 3].tolist() == [True, True, True, True, False]
    assert mask[0, 1].tolist() == [True, True, False, False, False]  # the prompt: causal
    assert mask[1, 1].tolist() == [True, True, False, False, False]
    assert not mask[1, :2, 2:].any()  # nothing real looks at padding
    assert mask[1].any(dim=-1).all()  # and no query row is empty (no NaN from a softmax)
    # token 3 is predicted by the prompt's last token, 4 by 3, 5 again by the prompt's last
    assert list(zip(mb.predict_rows.tolist(), mb.predict_cols.tolist(), strict=True)) == [
        (0, 1),
        (0, 2),
        (0, 1),
        (1, 0),
    ]
    assert mb.targets.tolist() == [3, 4, 5, 6]


def test_rows_of_one_completion_keep_the_plain_causal_mask() -> None:
    mb = micro_batch(pack_rows([[1, 2], [3]], [[4], [5]], budget=100), pad_id=0)
    assert mb.position_ids is None and mb.attention_mask.tolist() == [[1, 1, 1], [1, 1, 0]]
