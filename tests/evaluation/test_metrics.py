"""pass@k and the bootstrap, checked against definitions computed independently here."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from azr.common.stats import bootstrap_ci, paired_bootstrap_diff, pass_at_k


@pytest.mark.parametrize(
    "n,c,k", [(1, 0, 1), (1, 1, 1), (5, 2, 1), (5, 2, 3), (10, 3, 4), (8, 8, 2)]
)
def test_pass_at_k_matches_enumeration(n: int, c: int, k: int) -> None:
    # Enumerate every k-subset of n samples (c correct) and count subsets with a correct one.
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    hits = sum(any(samples[i] for i in s) for s in subsets)
    assert pass_at_k(n, c, k) == pytest.approx(hits / len(subsets))


def test_pass_at_k_equals_binomial_formula_for_large_n() -> None:
    n, c, k = 200, 17, 10
    expected = 1 - math.comb(n - c, k) / math.comb(n, k)
    assert pass_at_k(n, c, k) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("n,c,k", [(3, 4, 1), (3, -1, 1), (3, 1, 0), (3, 1, 4)])
def test_pass_at_k_rejects_bad_arguments(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_bootstrap_brackets_mean_and_is_seeded() -> None:
    rng = random.Random(3)
    scores = [float(rng.random() < 0.3) for _ in range(120)]
    ci = bootstrap_ci(scores, resamples=1000, seed=7)
    assert ci.mean == pytest.approx(sum(scores) / len(scores))
    assert ci.low < ci.mean < ci.high
    # A 95% interval of a proportion near 0.3 over 120 items is roughly +-0.08 wide.
    assert 0.05 < ci.high - ci.low < 0.25
    assert bootstrap_ci(scores, resamples=1000, seed=7) == ci
    assert bootstrap_ci(scores, resamples=1000, seed=8) != ci


def test_bootstrap_of_constant_scores_is_a_point() -> None:
    ci = bootstrap_ci([1.0] * 10, resamples=200)
    assert (ci.low, ci.mean, ci.high) == (1.0, 1.0, 1.0)


def test_bootstrap_rejects_empty() -> None:
    with pytest.raises(ValueError):
        bootstrap_ci([])


def test_paired_difference_detects_a_real_gain_only() -> None:
    before = [0.0] * 50 + [1.0] * 50
    after = [1.0] * 100
    assert paired_bootstrap_diff(after, before, seed=1).low > 0
    same = paired_bootstrap_diff(before, before, seed=1)
    assert same.low == same.high == 0.0
    with pytest.raises(ValueError):
        paired_bootstrap_diff([1.0], [1.0, 0.0])
