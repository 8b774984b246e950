"""TRR++ advantages against numbers worked out by hand, plus properties."""

from __future__ import annotations

import math
import random

import pytest

from azr.core.trrpp import loss_token_weights, per_task_groups, trrpp_advantages


def test_hand_computed_two_sequences() -> None:
    # Group g: rewards 1 and -1 with lengths 3 and 1 -> 4 tokens.
    # mu = (3*1 + 1*(-1)) / 4 = 0.5
    # var = (3*(0.5)^2 + 1*(1.5)^2) / (4 - 1) = (0.75 + 2.25) / 3 = 1.0
    # A = (1 - 0.5)/1 = 0.5 and (-1 - 0.5)/1 = -1.5
    adv = trrpp_advantages([1.0, -1.0], ["g", "g"], [3, 1], eps=0.0)
    assert adv == pytest.approx([0.5, -1.5])


def test_hand_computed_three_sequences_with_eps() -> None:
    # rewards 0, 1, -0.5 with lengths 2, 2, 4 -> 8 tokens.
    # mu = (0 + 2 - 2) / 8 = 0
    # var = (2*0 + 2*1 + 4*0.25) / 7 = 3/7
    # sd = sqrt(3/7 + 1e-8)
    adv = trrpp_advantages([0.0, 1.0, -0.5], ["a"] * 3, [2, 2, 4])
    sd = math.sqrt(3 / 7 + 1e-8)
    assert adv == pytest.approx([0.0, 1 / sd, -0.5 / sd])


def test_groups_are_independent() -> None:
    # Group x alone is the first test's case; group y has rewards 0.875 and -0.5 with lengths
    # 1 and 1: mu = 0.1875, var = (0.6875^2 * 2) / 1 = 0.9453125, sd = 0.97227...
    rewards = [1.0, 0.875, -1.0, -0.5]
    groups = ["x", "y", "x", "y"]
    lengths = [3, 1, 1, 1]
    adv = trrpp_advantages(rewards, groups, lengths, eps=0.0)
    sd_y = math.sqrt(0.9453125)
    assert adv == pytest.approx([0.5, 0.6875 / sd_y, -1.5, -0.6875 / sd_y])
    # Changing group y's rewards leaves group x untouched.
    moved = trrpp_advantages([1.0, 100.0, -1.0, 3.0], groups, lengths, eps=0.0)
    assert moved[0] == adv[0] and moved[2] == adv[2]


def test_equal_rewards_give_zero() -> None:
    assert trrpp_advantages([-0.5, -0.5, -0.5], ["g"] * 3, [5, 9, 1]) == [0.0, 0.0, 0.0]


def test_zero_length_and_single_token_edge_cases() -> None:
    # The empty sequence neither gets an advantage nor shifts the mean of the others.
    with_empty = trrpp_advantages([1.0, -1.0, 50.0], ["g"] * 3, [3, 1, 0], eps=0.0)
    assert with_empty == pytest.approx([0.5, -1.5, 0.0])
    # A group holding a single token has no unbiased variance: advantage 0.
    assert trrpp_advantages([1.0, 0.3], ["solo", "other"], [1, 0]) == [0.0, 0.0]


def test_mismatched_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="differ in size"):
        trrpp_advantages([1.0], ["g", "g"], [1, 1])
    with pytest.raises(ValueError, match="negative"):
        trrpp_advantages([1.0, 0.0], ["g", "g"], [1, -1])


def test_properties_random_batches() -> None:
    rng = random.Random(7)
    for _ in range(50):
        n = rng.randint(2, 30)
        groups = [rng.choice("abcdef") for _ in range(n)]
        rewards = [rng.choice([-1.0, -0.5, 0.0, 0.25, 0.875, 1.0]) for _ in range(n)]
        lengths = [rng.randint(1, 40) for _ in range(n)]
        adv = trrpp_advantages(rewards, groups, lengths, eps=0.0)
        for g in set(groups):
            idx = [i for i in range(n) if groups[i] == g]
            tokens = sum(lengths[i] for i in idx)
            if len({rewards[i] for i in idx}) == 1:
                assert all(adv[i] == 0.0 for i in idx)
                continue
            # Token-weighted mean ~ 0 and unbiased token variance ~ 1 inside every group.
            mean = sum(lengths[i] * adv[i] for i in idx) / tokens
            var = sum(lengths[i] * adv[i] ** 2 for i in idx) / (tokens - 1)
            assert mean == pytest.approx(0.0, abs=1e-9)
            assert var == pytest.approx(1.0)
            # Whitening keeps the order of rewards.
            for i in idx:
                for j in idx:
                    if rewards[i] > rewards[j]:
                        assert adv[i] > adv[j]


def test_per_task_groups_give_each_task_its_own_baseline() -> None:
    groups = ["deduction.solve"] * 5 + ["deduction.propose"] * 2
    tasks: list[str | None] = ["a", "a", "b", "b", "c", None, None]
    keys = per_task_groups(groups, tasks)
    rewards = [1.0, -0.5, 1.0, 1.0, -0.5, 0.5, -1.0]
    adv = trrpp_advantages(rewards, keys, [3] * 7)
    # task a: one right, one wrong -> opposite signs of equal size
    assert adv[0] > 0 > adv[1] and adv[0] == pytest.approx(-adv[1])
    # task b solved by both, task c alone: no signal from their own baselines
    assert adv[2] == adv[3] == adv[4] == 0.0
    # proposals (no task key) keep their task x role group
    assert adv[5] > 0 > adv[6]
    # under the one TRR++ baseline the solved task b would have counted as better than average
    shared = trrpp_advantages(rewards, groups, [3] * 7)
    assert shared[2] > 0


def test_per_task_groups_reject_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="differ in size"):
        per_task_groups(["g"], [])


def test_token_mean_weights_every_response_token_equally() -> None:
    weights = loss_token_weights(["a", "a", "b", "b"], [3, 0, 1, 4], "token_mean")
    assert weights == [1 / 8, 0.0, 1 / 8, 1 / 8]


def test_group_token_mean_gives_every_group_the_same_pull() -> None:
    """Long proposals and short answers: each group's tokens together weigh 1 / groups."""
    rng = random.Random(7)
    for _ in range(50):
        groups = [rng.choice(["propose", "solve", "other"]) for _ in range(12)]
        lengths = [rng.choice([0, 2, 3, 90, 160]) for _ in range(12)]
        weights = loss_token_weights(groups, lengths, "group_token_mean")
        present = {g for g, n in zip(groups, lengths, strict=True) if n > 0}
        for g in present:
            share = sum(w * n for w, n, h in zip(weights, lengths, groups, strict=True) if h == g)
            assert share == pytest.approx(1 / len(present))
        assert all(w == 0.0 for w, n in zip(weights, lengths, strict=True) if n == 0)
        # inside one group every token counts the same
        for g in present:
            assert (
                len({w for w, h, n in zip(weights, groups, lengths, strict=True) if h == g and n})
                == 1
            )


def test_loss_token_weights_reject_bad_input() -> None:
    assert loss_token_weights(["a"], [0], "group_token_mean") == [0.0]
    with pytest.raises(ValueError, match="differ in size"):
        loss_token_weights(["a"], [1, 2])
    with pytest.raises(ValueError, match="unknown loss aggregation"):
        loss_token_weights(["a"], [1], "sequence_mean")  # type: ignore[arg-type]
