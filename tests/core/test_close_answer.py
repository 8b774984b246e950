"""Ending an answer once its blocks are complete (`answer_complete_at` / `close_answer`)."""

from __future__ import annotations

import pytest

from azr.core.parsing import (
    answer_complete_at,
    check_format,
    close_answer,
    parse_answer,
    parse_proposal,
)
from azr.core.tasks import Role, TaskType

PROGRAM = "```python\ndef f(x):\n    return x * 2 + 1\n```"
RAMBLE = "\nThis function doubles x. Let me also explain ```more``` things and so on"


def head(body: str) -> str:
    return f" plan </think>\n<answer>\n{body}"


def test_rambling_deduction_proposal_is_cut_after_its_input_block() -> None:
    response = head(f"{PROGRAM}\n```input\n3\n```{RAMBLE}")
    at = answer_complete_at(TaskType.DEDUCTION, Role.PROPOSE, response)
    assert at is not None and response[:at].endswith("```input\n3\n```")
    closed = close_answer(response, at)
    assert not check_format(response) and check_format(closed)
    proposal = parse_proposal(TaskType.DEDUCTION, closed)
    assert proposal.format_ok and proposal.inputs == ["3"]
    assert proposal.program is not None and "x * 2 + 1" in proposal.program
    assert "explain" not in closed


def test_blocks_in_either_order_complete_a_proposal() -> None:
    response = head(f"```input\n3\n```\n{PROGRAM}{RAMBLE}")
    at = answer_complete_at(TaskType.ABDUCTION, Role.PROPOSE, response)
    assert at is not None and response[:at].endswith(PROGRAM)


@pytest.mark.parametrize(
    "response",
    [
        head(PROGRAM + RAMBLE),  # no input block yet
        head(f"{PROGRAM}\n```input\n3\n"),  # input block still open
        head(f"{PROGRAM}\n```input\n   \n```"),  # empty input block does not count
        f" plan </think>\n{PROGRAM}\n```input\n3\n```",  # never opened <answer>
        head(f"{PROGRAM}\n```input\n3\n```\n</answer>{RAMBLE}"),  # closed by the model itself
    ],
)
def test_incomplete_or_already_closed_answers_are_left_alone(response: str) -> None:
    assert answer_complete_at(TaskType.DEDUCTION, Role.PROPOSE, response) is None


def test_induction_proposal_needs_every_input_and_the_message() -> None:
    inputs = "".join(f"```input\n{i}\n```\n" for i in range(3))
    without_message = head(inputs + RAMBLE)
    assert answer_complete_at(TaskType.INDUCTION, Role.PROPOSE, without_message, n_inputs=3) is None
    response = head(inputs + "```message\nit doubles\n```" + RAMBLE)
    assert answer_complete_at(TaskType.INDUCTION, Role.PROPOSE, response, n_inputs=4) is None
    at = answer_complete_at(TaskType.INDUCTION, Role.PROPOSE, response, n_inputs=3)
    assert at is not None and response[:at].endswith("it doubles\n```")


@pytest.mark.parametrize(
    ("task_type", "body", "value"),
    [
        (TaskType.DEDUCTION, "```output\n7\n```", "7"),
        (TaskType.ABDUCTION, "```input\n3\n```", "3"),
        (TaskType.INDUCTION, PROGRAM, "def f(x):\n    return x * 2 + 1"),
    ],
)
def test_solver_answers_close_after_their_one_block(
    task_type: TaskType, body: str, value: str
) -> None:
    response = head(body + RAMBLE)
    at = answer_complete_at(task_type, Role.SOLVE, response)
    assert at is not None
    answer = parse_answer(task_type, close_answer(response, at))
    assert answer.format_ok and answer.value == value
