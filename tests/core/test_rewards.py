from __future__ import annotations

import pytest

from azr.core.rewards import (
    copies_prompt,
    echoes_input,
    is_trivial_program,
    learnability,
    proposer_reward,
    solver_reward,
)
from azr.core.tasks import IDENTITY_INDUCTION_SEED, IDENTITY_SEED, Task, TaskType


@pytest.mark.parametrize(
    ("results", "expected"),
    [
        ([], 0.0),
        ([False] * 8, 0.0),
        ([True] * 8, 0.0),
        ([True] + [False] * 7, 0.875),  # one success in eight: the largest value
        ([True] * 4 + [False] * 4, 0.5),
        ([True] * 7 + [False], 0.125),
    ],
)
def test_learnability(results: list[bool], expected: float) -> None:
    assert learnability(results) == pytest.approx(expected)


def test_solver_reward() -> None:
    assert solver_reward(True, True) == 1.0
    assert solver_reward(True, False) == -0.5
    assert solver_reward(False, True) == -1.0
    assert solver_reward(False, False) == -1.0


def test_binary_solver_reward_does_not_grade_wrong_answers() -> None:
    # a task nobody solves gives equal rewards, so a per-task baseline takes no step from it
    assert solver_reward(True, True, "binary") == 1.0
    assert solver_reward(True, False, "binary") == solver_reward(False, False, "binary") == 0.0
    assert solver_reward(False, True, "binary") == 0.0
    with pytest.raises(ValueError, match="unknown solver reward"):
        solver_reward(True, True, "graded")  # type: ignore[arg-type]


def test_proposer_reward() -> None:
    assert proposer_reward(False, True, 0.5) == -1.0
    assert proposer_reward(True, False, 0.5) == -1.0
    assert proposer_reward(True, True, 0.0) == -0.5
    assert proposer_reward(True, True, 0.0, trivial_reward=0.0) == 0.0  # the paper's equation
    assert proposer_reward(True, True, 0.375) == 0.375


def _task(program: str, inputs: tuple[str, ...], outputs: tuple[str, ...]) -> Task:
    return Task(TaskType.INDUCTION, program, inputs, outputs)


def test_trivial_from_ast() -> None:
    assert is_trivial_program(IDENTITY_SEED) == "identity"
    assert is_trivial_program(IDENTITY_INDUCTION_SEED) == "identity"
    doc = 'def f(x, y):\n    """Give x back."""\n    return x'
    assert is_trivial_program(_task(doc, ("1, 2",), ("1",))) == "identity"
    const = "def f(x):\n    y = x * 2\n    return (1, 'a')"
    assert is_trivial_program(_task(const, ("3",), ("(1, 'a')",))) == "constant"
    branches = "def f(x):\n    if x:\n        return 1\n    return -2"
    assert is_trivial_program(_task(branches, ("0",), ("-2",))) == "constant"


def test_not_trivial() -> None:
    mutates = "def f(xs):\n    xs.sort()\n    return xs"
    assert is_trivial_program(_task(mutates, ("[3, 1]",), ("[1, 3]",))) is None
    real = "def f(x):\n    return x * 2"
    assert is_trivial_program(_task(real, ("1", "2"), ("2", "4"))) is None
    # A nested helper's constant return does not make f constant.
    nested = "def f(x):\n    def g():\n        return 1\n    return x + g()"
    assert is_trivial_program(_task(nested, ("1", "5"), ("2", "6"))) is None


def test_trivial_from_outputs() -> None:
    # The AST hides it (a lookup), the outputs show a constant.
    hidden = "TABLE = {}\ndef f(x):\n    return TABLE.get('k', 7)"
    assert is_trivial_program(_task(hidden, ("1", "'a'", "[2]"), ("7", "7", "7"))) == "constant"
    copy = "def f(x):\n    out = x\n    return out"
    assert is_trivial_program(_task(copy, ("1", "'a'"), ("1", "'a'"))) == "identity"
    # 1 and True compare equal but are different values: not an identity.
    flag = "def f(x):\n    out = bool(x)\n    return out"
    assert is_trivial_program(_task(flag, ("1", "True"), ("True", "True"))) == "constant"
    assert is_trivial_program(_task(flag, ("1", "0"), ("True", "False"))) is None


def test_echo_tasks_are_those_an_answer_copied_from_the_prompt_solves() -> None:
    # Not trivial as a program, yet on this input the output is the input: copying wins.
    ordered = "def f(xs):\n    return sorted(xs)"
    assert echoes_input(_task(ordered, ("[1, 2, 3]",), ("[1,2,3]",)))
    assert not echoes_input(_task(ordered, ("[3, 1]",), ("[1, 3]",)))
    assert echoes_input(IDENTITY_SEED) and echoes_input(IDENTITY_INDUCTION_SEED)
    # Induction: every pair must echo; one that does not makes copying fail.
    assert not echoes_input(_task(ordered, ("[1, 2]", "[2, 1]"), ("[1, 2]", "[1, 2]")))
    # As the grader compares: Python == of literals (1 == True == 1.0, so copying 1 is graded
    # right there; a list is not its tuple), else the same stripped text.
    assert echoes_input(_task("def f(x):\n    return x == 1", ("1",), ("True",)))
    assert echoes_input(_task("def f(x):\n    return x * 1.0", ("1",), ("1.0",)))
    assert not echoes_input(_task("def f(x):\n    return tuple(x)", ("[1, 2]",), ("(1, 2)",)))
    assert echoes_input(_task("def f(x):\n    return x", ("nan ",), ("nan",)))
    assert not echoes_input(_task(ordered, (), ()))
    # Returning one of two parameters is an identity for the triviality flag, not an echo.
    assert not echoes_input(_task("def f(x, y):\n    return x", ("1, 2",), ("1",)))


def test_an_answer_copies_the_prompt_when_it_repeats_what_the_task_shows() -> None:
    double = "def f(x):\n    return x * 2"
    deduction = Task(TaskType.DEDUCTION, double, ("(1, 2)",), ("(1, 2, 1, 2)",))
    assert copies_prompt(deduction, "(1,2)") and not copies_prompt(deduction, "(1, 2, 1, 2)")
    # "2." is the float 2.0, which the grader counts equal to an input of 2
    assert copies_prompt(Task(TaskType.DEDUCTION, double, ("2",), ("4",)), "2.")
    abduction = Task(TaskType.ABDUCTION, double, ("3",), ("6",))
    assert copies_prompt(abduction, "6") and not copies_prompt(abduction, "3")
    induction = Task(TaskType.INDUCTION, double, ("3",), ("6",), message="doubles")
    assert not copies_prompt(induction, "3") and not copies_prompt(deduction, "")
