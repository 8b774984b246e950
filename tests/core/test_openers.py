"""The opener prompt profiles: what the prompts show, that every opener round-trips through its
parser, and that copying what a prompt shows never makes a well-formed answer where that would be
a hack."""

from __future__ import annotations

import re

import pytest

from azr.core import openers
from azr.core.profiles import (
    PROFILES,
    PromptSpec,
    check_profile,
    complete_at,
    first_stage_done,
    parse_propose,
    parse_solve,
    propose_spec,
    solve_spec,
)
from azr.core.tasks import Role, Task, TaskType

PROGRAM = "def f(x):\n    return x + 1"
DEDUCTION = Task(TaskType.DEDUCTION, PROGRAM, ("3",), ("4",))
ABDUCTION = Task(TaskType.ABDUCTION, "def f(s):\n    return s.upper()", ("'ab'",), ("'AB'",))
INDUCTION = Task(
    TaskType.INDUCTION,
    PROGRAM,
    ("1", "2", "5", "7"),
    ("2", "3", "6", "8"),
    message="It adds one.",
)
OPENERS = ["opener", "opener-think"]


def _solve(task: Task, profile: str, reply: str) -> tuple[PromptSpec, bool, str]:
    spec = solve_spec(task, profile)
    answer = parse_solve(spec, task.task_type, spec.prefill + reply)
    return spec, answer.format_ok, answer.value


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("profile", OPENERS)
@pytest.mark.parametrize(
    ("task", "reply", "value"),
    [
        (DEDUCTION, "4\n", "4"),
        (DEDUCTION, "'a b'.", "'a b'"),  # a sentence's final period is not part of the value
        (DEDUCTION, "[1, 2]</answer>", "[1, 2]"),
        (ABDUCTION, "'ab') returns 'AB'", "'ab'"),
        (ABDUCTION, "'a)b', k=2)", "'a)b', k=2"),
        (INDUCTION, "x):\n    return x + 1\n", "def f(x):\n    return x + 1"),
        # the generation may be cut by the length limit: the whole lines that parse are kept
        (INDUCTION, "x):\n    return x + 1\nprint(f(1))\nThis f", "def f(x):\n    return x + 1"),
    ],
)
def test_solver_opener_round_trips(profile: str, task: Task, reply: str, value: str) -> None:
    spec, ok, parsed = _solve(task, profile, reply)
    assert spec.reply_start.endswith(spec.opener)
    assert ok and parsed == value


def test_openers_per_role() -> None:
    assert solve_spec(DEDUCTION, "opener").opener == "f(3) returns "
    multi = Task(TaskType.DEDUCTION, PROGRAM, ("[1,\n 2]",), ("x",))
    assert solve_spec(multi, "opener").opener == "f([1, 2]) returns "
    assert solve_spec(ABDUCTION, "opener").opener == "f("
    assert solve_spec(INDUCTION, "opener").opener.endswith("def f(")
    assert propose_spec(TaskType.DEDUCTION, [DEDUCTION], [], "opener").opener.endswith("def f(")
    assert propose_spec(TaskType.INDUCTION, [INDUCTION], [], "opener").opener.endswith("\nf(")
    think = solve_spec(DEDUCTION, "opener-think")
    assert think.reply_start.startswith("<think>") and "<answer>" in think.prefill
    assert "</answer>" in think.stop and "\n" in solve_spec(DEDUCTION, "opener").stop
    assert "```" in solve_spec(INDUCTION, "opener").stop
    program_spec = propose_spec(TaskType.DEDUCTION, [DEDUCTION], [], "opener")
    # a program proposal's first stage ends at the program's fence; its second at the line end
    assert "```" in program_spec.stop and program_spec.followup.endswith("f(")
    assert "\n" in program_spec.followup_stop
    assert not propose_spec(TaskType.INDUCTION, [INDUCTION], [], "opener").followup


@pytest.mark.parametrize("profile", OPENERS)
def test_proposer_openers_round_trip(profile: str) -> None:
    spec = propose_spec(TaskType.DEDUCTION, [DEDUCTION], ["os"], profile)
    program = "def f(xs):\n    return sorted(xs)[::2]"
    first = "xs):\n    return sorted(xs)[::2]\n```"
    assert first_stage_done(spec, first) and not first_stage_done(spec, first[:-3])
    # the two stages: the program to its fence, then the call the service opened for the input
    response = spec.prefill + first + spec.followup + "[5, 3, 9])\n"
    assert complete_at(spec, TaskType.DEDUCTION, Role.PROPOSE, response) is None
    got = parse_propose(spec, TaskType.DEDUCTION, response)
    assert got.format_ok and got.parsed
    assert got.program == program and got.inputs == ["[5, 3, 9]"]
    # a second stage that names a variable, or never closes the call, is no input
    for second in ("xs)", "[5, 3"):
        response = spec.prefill + first + spec.followup + second
        assert not parse_propose(spec, TaskType.DEDUCTION, response).format_ok
    # the input in its own block after the program (the wording of the prompt) ...
    reply = "xs):\n    return sorted(xs)[::2]\n```\n```input\n[5, 3, 9]\n```"
    got = parse_propose(spec, TaskType.DEDUCTION, spec.prefill + reply)
    assert got.format_ok and got.parsed
    assert got.program == program and got.inputs == ["[5, 3, 9]"]
    # ... or, failing that, a call of f at the end of the program's block
    reply = "xs):\n    return sorted(xs)[::2]\n\nprint(f([5, 3, 9]))\n```"
    got = parse_propose(spec, TaskType.DEDUCTION, spec.prefill + reply)
    assert got.format_ok and got.program == program and got.inputs == ["[5, 3, 9]"]
    # an input block that is not a literal argument list does not count
    reply = "xs):\n    return xs\n```\n```input\nxs\n```"
    assert not parse_propose(spec, TaskType.DEDUCTION, spec.prefill + reply).format_ok

    spec = propose_spec(TaskType.INDUCTION, [INDUCTION], [], profile, n_inputs=3)
    reply = "1)\nf(-4)\nf(10)\n# it adds one\n```"
    got = parse_propose(
        spec, TaskType.INDUCTION, spec.prefill + reply, n_inputs=3, reference=INDUCTION
    )
    assert got.format_ok and got.parsed
    assert got.inputs == ["1", "-4", "10"] and got.message == "it adds one"
    no_hint = parse_propose(
        spec,
        TaskType.INDUCTION,
        spec.prefill + "1)\nf(2)\nf(3)\n```",
        n_inputs=3,
        reference=INDUCTION,
    )
    assert not no_hint.format_ok and "hint" in (no_hint.error or "")
    assert got.program == INDUCTION.program


# ---------------------------------------------------------------- strictness


@pytest.mark.parametrize(
    ("task", "reply"),
    [
        (DEDUCTION, ""),
        (DEDUCTION, "x + 1"),  # an expression, not a value
        (DEDUCTION, "f(3)"),  # the call it was shown
        (DEDUCTION, "the value"),
        (ABDUCTION, "s)"),  # the parameter name
        (ABDUCTION, "'ab'"),  # never closed
        (ABDUCTION, ")"),  # no argument
        (ABDUCTION, "*[1])"),  # not a literal argument list
        (INDUCTION, "x):"),
        (INDUCTION, "```"),
    ],
)
def test_malformed_answers_are_not_well_formed(task: Task, reply: str) -> None:
    for profile in OPENERS:
        _spec, ok, _value = _solve(task, profile, reply)
        assert not ok, (profile, reply)


def test_abduction_takes_only_the_first_argument_list() -> None:
    _spec, ok, value = _solve(ABDUCTION, "opener", "1), g(2)")
    # '1' closes at the first ')': the rest of the line is ignored, never executed as arguments
    assert (ok, value) == (True, "1")


def test_a_reply_without_its_opener_is_not_well_formed() -> None:
    spec = solve_spec(DEDUCTION, "opener")
    assert not parse_solve(spec, TaskType.DEDUCTION, "4").format_ok


def _copyable(spec: PromptSpec) -> list[str]:
    """Everything a model could copy from a prompt: every line, every inline code span, every
    sentence and every word of it."""
    text = f"{spec.system}\n{spec.task_text}"
    pieces = text.split("\n") + re.findall(r"`([^`]+)`", text) + re.split(r"(?<=[.:])\s+", text)
    pieces += text.split()
    return [p for p in dict.fromkeys(pieces) if p.strip()]


def _task_data(task: Task) -> set[str]:
    """Values the task itself shows: answering with one of them is a legitimate guess that the
    executor verifies like any other (only the input of the identity would be correct)."""
    return {*task.inputs, *task.outputs, "1", "4", "3", "2", "5", "6", "7", "8"}


@pytest.mark.parametrize("profile", OPENERS)
@pytest.mark.parametrize("task", [DEDUCTION, ABDUCTION, INDUCTION])
def test_copying_the_prompt_is_never_well_formed(profile: str, task: Task) -> None:
    """No line, sentence, code span or word of the prompt is a well-formed answer, except the
    task's own values (which only score when they really are the answer)."""
    spec = solve_spec(task, profile)
    data = _task_data(task)
    for piece in _copyable(spec):
        for reply in (piece, piece + "\n"):
            answer = parse_solve(spec, task.task_type, spec.prefill + reply)
            if answer.format_ok:
                assert answer.value.strip("'\"") in data or answer.value in data, (piece, answer)


@pytest.mark.parametrize("profile", OPENERS)
def test_opener_prompts_hold_no_example_answer(profile: str) -> None:
    """The only code a prompt shows is the task's own program (or a reference's): no example
    answer a copy could score with."""
    shown = [
        solve_spec(DEDUCTION, profile),
        solve_spec(ABDUCTION, profile),
        solve_spec(INDUCTION, profile),
        propose_spec(TaskType.DEDUCTION, [DEDUCTION], ["os"], profile),
        propose_spec(TaskType.ABDUCTION, [DEDUCTION], ["os"], profile),
        propose_spec(TaskType.INDUCTION, [INDUCTION], ["os"], profile),
    ]
    programs = {DEDUCTION.source, ABDUCTION.source, INDUCTION.source}
    for spec in shown:
        for body in re.findall(r"```python\n(.*?)\n```", spec.task_text, flags=re.DOTALL):
            assert body in programs
        assert "example" not in spec.task_text.lower()


@pytest.mark.parametrize("profile", OPENERS)
def test_copying_a_proposer_prompt_is_not_a_proposal(profile: str) -> None:
    for task_type in TaskType:
        ref = INDUCTION if task_type is TaskType.INDUCTION else DEDUCTION
        spec = propose_spec(task_type, [ref], ["os"], profile, n_inputs=3)
        for piece in _copyable(spec):
            got = parse_propose(spec, task_type, spec.prefill + piece, n_inputs=3, reference=ref)
            assert not got.format_ok, piece
        # the reference as shown (program, then `f(3) returns 4`) is not a proposal either
        shown = f"{ref.source.removeprefix('def f(')}\nf(3) returns 4\n```"
        got = parse_propose(spec, task_type, spec.prefill + shown, n_inputs=3, reference=ref)
        assert not got.format_ok


def test_call_arguments() -> None:
    assert openers.call_arguments("3) returns 4") == "3"
    assert openers.call_arguments("(1, 2), [3]) x") == "(1, 2), [3]"
    assert openers.call_arguments("x)") is None
    assert openers.call_arguments("3") is None


def test_profiles_are_checked() -> None:
    assert set(PROFILES) == {"paper", "opener", "opener-think"}
    assert check_profile("opener") == "opener"
    with pytest.raises(ValueError, match="unknown prompt profile"):
        check_profile("nope")
    with pytest.raises(ValueError):
        solve_spec(DEDUCTION, "nope")
    assert openers.opener_for(TaskType.DEDUCTION, Role.SOLVE, DEDUCTION) == "f(3) returns "
    with pytest.raises(ValueError):
        openers.opener_for(TaskType.DEDUCTION, Role.SOLVE)


def test_paper_profile_is_the_reference_wording() -> None:
    """The paper profile is unchanged: its prompt is `solve_prompt` with a pre-opened think."""
    from azr.core.prompts import propose_prompt, solve_prompt

    spec = solve_spec(DEDUCTION, "paper")
    assert spec.task_text == solve_prompt(DEDUCTION) and spec.reply_start == "<think>"
    assert spec.stop == () and spec.prefill == ""
    spec = propose_spec(TaskType.DEDUCTION, [DEDUCTION], ["os"], "paper", prefill=True)
    assert spec.task_text == propose_prompt(TaskType.DEDUCTION, [DEDUCTION], ["os"])
    assert spec.prefill.endswith("```python\ndef f(")
    got = parse_solve(
        spec, TaskType.DEDUCTION, "x </think>\n<answer>\n```output\n4\n```\n</answer>"
    )
    assert got.format_ok and got.value == "4"
