"""Prompt profiles: which wording a role is asked in, how its reply starts, where it ends and how
it is parsed. One place decides all four so they can never disagree.

- ``paper``: the reference's wording (`azr.core.prompts`): the R1 instruction, a pre-opened
  ``<think>``, fenced blocks inside ``<answer>``; optionally the fenced `answer_prefill`.
- ``opener``: the format in words, no example answer, and the reply started with an opener the
  model completes (`azr.core.openers`); no think section.
- ``opener-think``: the same, inside the R1 envelope: the think section is closed for the model
  with one sentence and ``<answer>`` opened before the opener.

docs/algorithm.md ("Prompt profiles") has what each gave on SmolLM2-135M.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from azr.core import openers
from azr.core.parsing import answer_complete_at, close_answer, parse_answer, parse_proposal
from azr.core.prompts import R1_INSTRUCTION, answer_prefill, propose_prompt, solve_prompt
from azr.core.tasks import Answer, Proposal, Role, Task, TaskType

PromptProfile = Literal["paper", "opener", "opener-think"]
PROFILES: tuple[str, ...] = get_args(PromptProfile)

THINK = "<think>"
# The think variant closes the think section for the model: a 135M model does not reason there.
THINK_SKIP = " I will answer directly. </think>\n<answer>\n"


@dataclass(frozen=True)
class PromptSpec:
    """A role's prompt before an engine's template: the instruction (system turn), the task
    text (user turn) and the start of the reply. ``prefill`` is the part of the reply after a
    leading ``<think>``; the parser is given ``prefill + generation``."""

    profile: str
    system: str
    task_text: str
    reply_start: str
    opener: str
    stop: tuple[str, ...]
    # A second stage (program proposals): appended after the first stage's text, the model
    # continues from it until `followup_stop`; "" when the reply has one stage.
    followup: str = ""
    followup_stop: tuple[str, ...] = ()

    @property
    def prefill(self) -> str:
        return self.reply_start.removeprefix(THINK)


def check_profile(profile: str) -> PromptProfile:
    if profile not in PROFILES:
        raise ValueError(f"unknown prompt profile {profile!r}; choose one of {', '.join(PROFILES)}")
    return profile  # type: ignore[return-value]


def _opener_spec(
    profile: str,
    task_text: str,
    opener: str,
    stop: list[str],
    followup: str = "",
    followup_stop: Sequence[str] = (),
) -> PromptSpec:
    system, start = (
        (openers.OPENER_SYSTEM, opener)
        if profile == "opener"
        else (R1_INSTRUCTION, THINK + THINK_SKIP + opener)
    )
    return PromptSpec(
        profile, system, task_text, start, opener, tuple(stop), followup, tuple(followup_stop)
    )


def solve_spec(task: Task, profile: str = "paper", *, prefill: bool = False) -> PromptSpec:
    """The solver's prompt for ``task``. ``prefill`` only matters for ``paper``."""
    profile = check_profile(profile)
    if profile == "paper":
        start = THINK + (answer_prefill(task.task_type, Role.SOLVE) if prefill else "")
        return PromptSpec(profile, R1_INSTRUCTION, solve_prompt(task), start, "", ())
    return _opener_spec(
        profile,
        openers.solve_text(task),
        openers.solve_opener(task),
        openers.solve_stop(task.task_type),
    )


def propose_spec(
    task_type: TaskType,
    references: Sequence[Task],
    banned: Sequence[str],
    profile: str = "paper",
    *,
    n_inputs: int = 10,
    prefill: bool = False,
) -> PromptSpec:
    profile = check_profile(profile)
    task_type = TaskType(task_type)
    if profile == "paper":
        text = propose_prompt(task_type, references, banned, n_inputs=n_inputs)
        start = THINK + (answer_prefill(task_type, Role.PROPOSE) if prefill else "")
        return PromptSpec(profile, R1_INSTRUCTION, text, start, "", ())
    return _opener_spec(
        profile,
        openers.propose_text(task_type, references, banned, n_inputs=n_inputs),
        openers.propose_opener(task_type),
        openers.propose_stop(task_type),
        openers.propose_followup(task_type),
        openers.followup_stop(task_type),
    )


def parse_solve(spec: PromptSpec, task_type: TaskType, response: str) -> Answer:
    """Parse a solver's ``prefill + generation`` the way its profile asked for it."""
    if spec.profile == "paper":
        return parse_answer(task_type, response)
    return openers.parse_solution(task_type, response, spec.opener)


def parse_propose(
    spec: PromptSpec,
    task_type: TaskType,
    response: str,
    *,
    n_inputs: int = 10,
    reference: Task | None = None,
) -> Proposal:
    if spec.profile == "paper":
        return parse_proposal(task_type, response, n_inputs=n_inputs, reference=reference)
    return openers.parse_proposition(
        task_type, response, spec.opener, n_inputs=n_inputs, reference=reference
    )


def first_stage_done(spec: PromptSpec, text: str) -> bool:
    """Whether a two-stage reply's first stage ended where the second begins (a program
    proposal: at its block's closing fence, not at the length limit or the closing tag)."""
    return bool(spec.followup) and text.endswith(openers.FENCE)


def complete_at(
    spec: PromptSpec, task_type: TaskType, role: Role, response: str, *, n_inputs: int = 10
) -> int | None:
    """Where a complete but unclosed answer can be cut: a ``paper`` answer once it holds its
    blocks (`answer_complete_at`). Opener replies end at their stop strings."""
    if spec.profile == "paper":
        return answer_complete_at(task_type, role, response, n_inputs=n_inputs)
    return None


__all__ = [
    "PROFILES",
    "PromptProfile",
    "PromptSpec",
    "check_profile",
    "close_answer",
    "complete_at",
    "first_stage_done",
    "parse_propose",
    "parse_solve",
    "propose_spec",
    "solve_spec",
]
