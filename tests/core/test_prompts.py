from __future__ import annotations

import re

import pytest

from azr.core.parsing import check_format, parse_answer, parse_proposal
from azr.core.prompts import (
    R1_INSTRUCTION,
    answer_prefill,
    propose_prompt,
    solve_prompt,
    wrap_r1,
)
from azr.core.tasks import IDENTITY_INDUCTION_SEED, IDENTITY_SEED, Role, Task, TaskType

REFS = [
    IDENTITY_SEED,
    Task(
        TaskType.DEDUCTION,
        "def f(xs):\n    return sorted(xs)[::2]",
        ("[5, 3, 9, 1]",),
        ("[1, 5]",),
        imports=("import math",),
    ),
]
BANNED = ["os", "random", "time"]


def test_wrap_r1_preopens_think() -> None:
    text = wrap_r1("do the thing")
    assert text.startswith(R1_INSTRUCTION)
    assert text.endswith("\nUser: do the thing\nAssistant: <think>")
    assert "<answer>" in R1_INSTRUCTION and "</think>" in R1_INSTRUCTION
    assert wrap_r1("x", prefill=" a").endswith("Assistant: <think> a")


@pytest.mark.parametrize("task_type", [TaskType.DEDUCTION, TaskType.ABDUCTION])
def test_propose_prompt_deduction_abduction(task_type: TaskType) -> None:
    text = propose_prompt(task_type, REFS, BANNED)
    for i, ref in enumerate(REFS, start=1):
        block = re.search(rf"<snippet_{i}>\n(.*?)\n</snippet_{i}>", text, re.DOTALL)
        assert block is not None
        assert f"```python\n{ref.source}\n```" in block.group(1)
        assert f"```input\n{ref.input}\n```" in block.group(1)
        assert f"```output\n{ref.output}\n```" in block.group(1)
    assert "<snippet_3>" not in text
    assert "import math" in text  # references are shown with their imports
    assert "os, random, time" in text
    for needle in ("`f`", "at least one parameter", "10 seconds", "```python", "```input"):
        assert needle in text
    # The difficulty bullet talks about this task's own unknown (fixes the official swap).
    difficulty = next(line for line in text.splitlines() if line.startswith("- Difficulty"))
    own, other = ("output", "input") if task_type is TaskType.DEDUCTION else ("input", "output")
    assert own in difficulty and f"predicting the {other}" not in difficulty


def test_deduction_and_abduction_framing_differ() -> None:
    ded = propose_prompt(TaskType.DEDUCTION, REFS, BANNED)
    abd = propose_prompt(TaskType.ABDUCTION, REFS, BANNED)
    assert ded != abd
    assert "find an input" in abd and "find an input" not in ded


def test_propose_prompt_example_parses() -> None:
    """The example in the prompt is itself a well-formed answer for our own parser."""
    text = propose_prompt(TaskType.DEDUCTION, REFS, BANNED)
    example = text[text.index("### Example answer") :].split("###")[1]
    proposal = parse_proposal(TaskType.DEDUCTION, "plan </think>\n" + example.split("\n", 1)[1])
    assert proposal.parsed and proposal.format_ok, proposal.error


def test_propose_prompt_induction() -> None:
    ref = REFS[1]
    text = propose_prompt(TaskType.INDUCTION, [ref, IDENTITY_SEED], BANNED, n_inputs=7)
    assert f"```python\n{ref.source}\n```" in text
    assert "f(<your input will be plugged here>)" in text
    assert IDENTITY_SEED.program not in text  # only the first reference is shown
    assert "Exactly 7 inputs" in text and "```message" in text
    assert "must not contain any code" in text
    with pytest.raises(ValueError):
        propose_prompt(TaskType.INDUCTION, [], BANNED)


def test_solve_prompt_deduction() -> None:
    task = REFS[1]
    text = solve_prompt(task)
    assert f"```python\n{task.source}\n```" in text
    assert f"```input\n{task.input}\n```" in text
    assert task.output not in text  # the answer is not shown
    assert "```output" in text


def test_solve_prompt_abduction() -> None:
    task = Task(TaskType.ABDUCTION, REFS[1].program, REFS[1].inputs, REFS[1].outputs)
    text = solve_prompt(task)
    assert f"```output\n{task.output}\n```" in text
    assert task.input not in text
    assert "```input" in text


def test_solve_prompt_induction_hides_program_and_hidden_pairs() -> None:
    task = IDENTITY_INDUCTION_SEED
    text = solve_prompt(task)
    assert task.program not in text
    visible, hidden = task.visible_pairs(), task.hidden_pairs()
    assert len(visible) == 3
    for i, (given, produced) in enumerate(visible, start=1):
        assert f"```input_{i}\n{given}\n```\n```output_{i}\n{produced}\n```" in text
    for given, _ in hidden:
        assert given not in text
    assert f"```message\n{task.message}\n```" in text
    assert "```python" in text


@pytest.mark.parametrize("task_type", list(TaskType))
@pytest.mark.parametrize("role", list(Role))
def test_prefill_opens_the_answer(task_type: TaskType, role: Role) -> None:
    prefill = answer_prefill(task_type, role)
    assert "</think>" in prefill and prefill.rstrip().endswith(("```input", "```output", "def f("))
    # A model that only continues the prefill and closes the tags produces a well-formed answer.
    continuation = {
        "```python\ndef f(": "x):\n    return x\n```\n```input\n1\n```\n</answer>",
        "```input\n": "1\n```\n</answer>",
        "```output\n": "1\n```\n</answer>",
    }
    tail = next(v for k, v in continuation.items() if prefill.endswith(k))
    assert check_format(prefill + tail)
    if role is Role.SOLVE:
        answer = parse_answer(task_type, prefill + tail)
        assert answer.format_ok and answer.value
