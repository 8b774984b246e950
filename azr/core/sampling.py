"""Sampling references, induction programs and solver batches (azr-reference §6.4-6.5).

Pure functions over sequences; randomness only from the ``random.Random`` passed in, so a run
seeded once is reproducible (the reference never seeds its RNGs, §10.21).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

from azr.core.tasks import Task

T = TypeVar("T")


def sample_references(pool: Sequence[Task], k: int, rng: random.Random) -> list[Task]:
    """``k`` references uniformly without replacement (all of them when the pool is smaller)."""
    if k <= 0 or not pool:
        return []
    return rng.sample(list(pool), min(k, len(pool)))


def sample_induction_program(
    deduction: Sequence[Task], abduction: Sequence[Task], rng: random.Random
) -> Task:
    """One program, uniform over the DISTINCT programs of the two buffers.

    The reference concatenates the two lists, so every seed (present in both) and every program
    proposed for both tasks is twice as likely. We count a program (with its imports) once: the
    induction proposer should not favour the seeds. Raises ValueError when both are empty.
    """
    distinct: dict[tuple[str, tuple[str, ...]], Task] = {}
    for task in (*deduction, *abduction):
        distinct.setdefault((task.program, task.imports), task)
    if not distinct:
        raise ValueError("no program in the deduction or abduction buffer")
    return rng.choice(list(distinct.values()))


def fill_solver_batch(
    new: Sequence[T],
    pool: Sequence[T],
    size: int,
    rng: random.Random,
    max_new: int | None = None,
) -> list[T]:
    """The reference's ``max_new`` mix: up to ``size`` of the newest tasks without replacement,
    the rest drawn uniformly from ``pool`` (the whole buffer, new tasks included). ``max_new``
    caps the newest tasks taken first (None: ``size``, the reference).

    Always returns exactly ``size`` items when ``pool`` or ``new`` is non-empty: the fill is
    without replacement while the pool is large enough and with replacement otherwise (the
    reference could come up short and crash, §6.5). Empty inputs give an empty list.
    """
    if size <= 0:
        return []
    first = size if max_new is None else min(max_new, size)
    batch = rng.sample(list(new), min(first, len(new)))
    missing = size - len(batch)
    source = list(pool) if pool else list(new)
    if missing and source:
        if len(source) >= missing:
            batch.extend(rng.sample(source, missing))
        else:
            batch.extend(rng.choices(source, k=missing))
    return batch
