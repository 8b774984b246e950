from __future__ import annotations

import random
from collections import Counter

import pytest

from azr.core.sampling import fill_solver_batch, sample_induction_program, sample_references
from azr.core.tasks import IDENTITY_SEED, Task, TaskType


def _task(i: int) -> Task:
    return Task(TaskType.DEDUCTION, f"def f(a):\n    return a + {i}", ("1",), (str(1 + i),))


def test_references_without_replacement() -> None:
    pool = [_task(i) for i in range(10)]
    rng = random.Random(0)
    for _ in range(20):
        refs = sample_references(pool, 6, rng)
        assert len(refs) == 6 and len(set(refs)) == 6
        assert all(r in pool for r in refs)
    assert sorted(sample_references(pool[:3], 6, rng), key=lambda t: t.program) == pool[:3]
    assert sample_references([], 6, rng) == []


def test_references_are_uniform() -> None:
    pool = [_task(i) for i in range(5)]
    rng = random.Random(1)
    counts = Counter(t for _ in range(5000) for t in sample_references(pool, 2, rng))
    # Each task is expected 5000 * 2/5 = 2000 times.
    assert all(1800 < c < 2200 for c in counts.values())


def test_induction_program_counts_duplicates_once() -> None:
    other = _task(1)
    rng = random.Random(2)
    picks = Counter(
        sample_induction_program([IDENTITY_SEED, other], [IDENTITY_SEED], rng).program
        for _ in range(4000)
    )
    # The seed sits in both buffers but is as likely as the other program.
    assert 1800 < picks[IDENTITY_SEED.program] < 2200
    with pytest.raises(ValueError, match="no program"):
        sample_induction_program([], [], rng)


def test_fill_solver_batch_prefers_new_then_fills() -> None:
    rng = random.Random(3)
    new = [100, 101, 102]
    pool = list(range(50)) + new
    batch = fill_solver_batch(new, pool, 8, rng)
    assert len(batch) == 8
    assert set(new) <= set(batch)
    many_new = list(range(200, 230))
    batch = fill_solver_batch(many_new, pool, 8, rng)
    assert len(batch) == 8 and len(set(batch)) == 8 and set(batch) <= set(many_new)


def test_fill_solver_batch_takes_at_most_max_new_of_the_newest() -> None:
    """With `max_new` the newest tasks fill only that many places; the rest come from the
    pool. Checked with a pool that holds no new task, so every new one in the batch came first."""
    rng = random.Random(5)
    new = list(range(100, 108))
    pool = list(range(50))
    for max_new in (0, 2, 5, 8, 20):
        for _ in range(20):
            batch = fill_solver_batch(new, pool, 8, rng, max_new)
            assert len(batch) == 8 and len(set(batch)) == 8
            assert sum(b in new for b in batch) == min(max_new, 8)
    # None keeps the reference's mix: the batch is all new tasks when there are enough
    assert set(fill_solver_batch(new, pool, 8, rng)) == set(new)


def test_fill_solver_batch_never_short() -> None:
    rng = random.Random(4)
    assert len(fill_solver_batch([], [1, 2], 64, rng)) == 64
    assert sorted(set(fill_solver_batch([], [1, 2], 64, rng))) == [1, 2]
    assert len(fill_solver_batch([5], [], 4, rng)) == 4
    assert fill_solver_batch([], [], 4, rng) == []
    assert fill_solver_batch([1], [1], 0, rng) == []


def test_seeded_rng_reproduces() -> None:
    pool = [_task(i) for i in range(20)]
    a = sample_references(pool, 6, random.Random(9))
    b = sample_references(pool, 6, random.Random(9))
    assert a == b
