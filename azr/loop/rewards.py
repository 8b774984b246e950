"""Rewards assembly: from verdicts to the six task x role groups of one reward batch.

The arithmetic (learnability, the composite -1 / -0.5 / r mapping) is the core's; this module
only applies it to the step's records and lays the result out as the trainer's batch.
"""

from __future__ import annotations

from typing import Any

from azr.core import rewards as core_rewards
from azr.core.tasks import Role, TaskType
from azr.settings import SolverRewardScheme

from .records import ScoredAnswer, ScoredProposal, StepOutcome


def score_proposal(sp: ScoredProposal, rollouts: list[bool], trivial_reward: float) -> None:
    """Learnability from the solver rollouts, then the composite proposer reward."""
    if sp.valid and rollouts:
        sp.solve_rate = sum(rollouts) / len(rollouts)
        sp.learnability = core_rewards.learnability(rollouts)
    else:
        sp.solve_rate = None if not sp.valid else 0.0
        sp.learnability = 0.0
    sp.reward = core_rewards.proposer_reward(
        format_ok=sp.gen.proposal.format_ok,
        valid=sp.valid,
        learnability=sp.learnability,
        trivial_reward=trivial_reward,
    )


def score_answer(sa: ScoredAnswer, scheme: SolverRewardScheme = "format_aware") -> None:
    sa.reward = core_rewards.solver_reward(
        format_ok=sa.gen.answer.format_ok, correct=sa.correct, scheme=scheme
    )


def reward_batch(outcome: StepOutcome, roles: set[str] | None = None) -> dict[str, Any]:
    """The trainer's reward batch: every sample of the six groups (of `roles` only, when
    given), each with its own version."""
    samples: list[dict[str, Any]] = []
    trained = {Role(r) for r in roles} if roles is not None else set(Role)
    for task_type in TaskType:
        for sp in outcome.proposals.get(task_type, []) if Role.PROPOSE in trained else []:
            samples.append(_sample(task_type, Role.PROPOSE, sp.gen, sp.reward))
            if sp.gen.continuation is not None:  # a two-stage proposal's second sequence
                samples.append(_sample(task_type, Role.PROPOSE, sp.gen.continuation, sp.reward))
        for sa in outcome.answers.get(task_type, []) if Role.SOLVE in trained else []:
            sample = _sample(task_type, Role.SOLVE, sa.gen, sa.reward)
            if sa.task_id is not None:  # answers to one task can share a baseline
                sample["task_id"] = str(sa.task_id)
            samples.append(sample)
    return {
        "batch_id": outcome.batch_id,
        "run_id": outcome.run_id,
        "step": outcome.step,
        "weight_version": outcome.weight_version,
        "samples": samples,
    }


def _sample(task_type: TaskType, role: Role, gen: Any, reward: float) -> dict[str, Any]:
    return {
        "task_type": task_type.value,
        "role": role.value,
        "prompt_token_ids": list(gen.prompt_token_ids),
        "completion_token_ids": list(gen.completion_token_ids),
        "sampling_logprobs": list(gen.logprobs),
        "reward": float(reward),
        # greedy (T = 0) has no tempered distribution to score; it is trained at T = 1
        "temperature": float(gen.temperature) if gen.temperature > 0 else 1.0,
        "weight_version": int(gen.weight_version),
    }
