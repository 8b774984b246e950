"""Task-Relative REINFORCE++ advantages (azr-reference §5).

Each sequence carries one scalar reward r_i on its last token. With gamma = 1 every one of its
L_i response tokens has return r_i, so whitening the *tokens* of a (task, role) group is the
same as whitening the sequences with weights L_i:

    mu    = sum_i L_i r_i / sum_i L_i
    var   = sum_i L_i (r_i - mu)^2 / (sum_i L_i - 1)        (unbiased, over tokens)
    A_i   = (r_i - mu) / sqrt(var + eps)

and every token of sequence i gets A_i. One baseline per group: the six task x role groups never
see each other's rewards. Edge cases: equal rewards in a group give A = 0; zero-length sequences
get 0 and do not count; a group with a single token has no unbiased variance, so its advantage
is 0 (its only token sits exactly on its own mean).

`per_task_groups` narrows the baseline for samples that answer the same task (several solver
samples per task): each task becomes its own group, so a task every sample solves (or none
does) contributes no gradient and the others are compared only with their siblings. This is a
departure from TRR++, off by default (docs/algorithm.md, "Several answers per task").

`loss_token_weights` says how much each response token counts in the loss. The reference takes
the token mean over the whole batch, so a group with long responses (proposals, ~100 tokens)
outweighs one with short ones (a deduction answer, 2-3 tokens) by its token count; the
`group_token_mean` alternative takes the token mean inside each task x role group and averages
the groups, so every group present pulls with the same weight (docs/algorithm.md, "Loss
aggregation").
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

from azr.settings import LossAggregation


def trrpp_advantages(
    rewards: Sequence[float],
    groups: Sequence[str],
    lengths: Sequence[int],
    eps: float = 1e-8,
) -> list[float]:
    """Per-sequence advantages, whitened with token weights inside each group."""
    if not len(rewards) == len(groups) == len(lengths):
        raise ValueError(
            f"rewards, groups and lengths differ in size: {len(rewards)}, {len(groups)}, "
            f"{len(lengths)}"
        )
    if any(n < 0 for n in lengths):
        raise ValueError("a response length is negative")

    members: dict[str, list[int]] = defaultdict(list)
    for i, group in enumerate(groups):
        if lengths[i] > 0:
            members[group].append(i)

    advantages = [0.0] * len(rewards)
    for idx in members.values():
        tokens = sum(lengths[i] for i in idx)
        # Equal rewards carry no signal; testing that exactly avoids float noise in mu/var.
        if tokens < 2 or len({rewards[i] for i in idx}) == 1:
            continue
        mu = sum(lengths[i] * rewards[i] for i in idx) / tokens
        var = sum(lengths[i] * (rewards[i] - mu) ** 2 for i in idx) / (tokens - 1)
        scale = 1.0 / math.sqrt(var + eps)
        for i in idx:
            advantages[i] = (rewards[i] - mu) * scale
    return advantages


def per_task_groups(groups: Sequence[str], task_keys: Sequence[str | None]) -> list[str]:
    """Group keys for per-task baselines: `group/task` where a sample names its task, the
    task x role group where it does not (proposals)."""
    if len(groups) != len(task_keys):
        raise ValueError(f"groups and task_keys differ in size: {len(groups)}, {len(task_keys)}")
    return [g if k is None else f"{g}/{k}" for g, k in zip(groups, task_keys, strict=True)]


def loss_token_weights(
    groups: Sequence[str], lengths: Sequence[int], aggregation: LossAggregation = "token_mean"
) -> list[float]:
    """Weight of every response token of sample i in the loss; the weights sum to 1.

    token_mean:        1 / N, N the response tokens of the batch (the reference).
    group_token_mean:  1 / (G * N_g), N_g the response tokens of the sample's group and G the
                       number of groups with any response token.
    """
    if len(groups) != len(lengths):
        raise ValueError(f"groups and lengths differ in size: {len(groups)}, {len(lengths)}")
    total = sum(n for n in lengths if n > 0)
    if total == 0:
        return [0.0] * len(lengths)
    if aggregation == "token_mean":
        return [1.0 / total if n > 0 else 0.0 for n in lengths]
    if aggregation != "group_token_mean":
        raise ValueError(f"unknown loss aggregation {aggregation!r}")
    per_group: dict[str, int] = defaultdict(int)
    for g, n in zip(groups, lengths, strict=True):
        if n > 0:
            per_group[g] += n
    n_groups = len(per_group)
    return [
        1.0 / (n_groups * per_group[g]) if n > 0 else 0.0
        for g, n in zip(groups, lengths, strict=True)
    ]
