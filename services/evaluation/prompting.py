"""Ask each benchmark problem the way the loop asks its solver: the core's solver prompt, rendered
by the inference service (same style and prefill settings), parsed by the core's answer parser.

CRUXEval-O is a deduction task, CRUXEval-I an abduction task. HumanEval is asked as an induction
task: the docstring's own examples are the visible input/output pairs and the signature with its
docstring is the message; the model writes `f`, which the grader renames to the entry point.
"""

from __future__ import annotations

import re
from typing import Any

from azr.core.parsing import answer_complete_at, close_answer, parse_answer
from azr.core.profiles import parse_solve, solve_spec
from azr.core.prompts import solve_prompt
from azr.core.tasks import Answer, Role, Task, TaskType
from services.inference.prompting import PromptStyle, RenderedPrompt, render, render_spec

from .datasets import Bench, Problem

HUMANEVAL_MESSAGE = (
    "Implement this function exactly as its docstring describes (name it `f`):\n{prompt}"
)

_DOCTEST_RE = re.compile(r"^\s*>>>\s*(\w+)\((.*)\)\s*$")


def doctest_pairs(problem: Problem) -> list[tuple[str, str]]:
    """(arguments, expected) pairs from `>>> entry(args)` lines followed by a one-line result."""
    lines = problem.prompt.splitlines()
    pairs: list[tuple[str, str]] = []
    for i, line in enumerate(lines[:-1]):
        m = _DOCTEST_RE.match(line)
        if not m or m.group(1) != problem.entry_point:
            continue
        expected = lines[i + 1].strip()
        if expected and not expected.startswith(">>>"):
            pairs.append((m.group(2).strip(), expected))
    return pairs


def as_task(problem: Problem) -> Task:
    """The AZR task a benchmark problem corresponds to. The solver prompt shows only what the
    task type shows: the input for deduction, the output for abduction."""
    if problem.task is not None:  # a held-out task is asked exactly as the loop asks it
        return problem.task
    if problem.bench is Bench.CRUXEVAL_O:
        return Task(TaskType.DEDUCTION, problem.program, (problem.input,), (problem.output,))
    if problem.bench is Bench.CRUXEVAL_I:
        return Task(TaskType.ABDUCTION, problem.program, (problem.input,), (problem.output,))
    pairs = doctest_pairs(problem)
    ins = tuple(p[0] for p in pairs)
    outs = tuple(p[1] for p in pairs)
    # An induction prompt shows the first half of a task's pairs; doubling them shows all of them
    # (HumanEval is graded by its own tests, not by hidden pairs).
    return Task(
        TaskType.INDUCTION,
        program="",
        inputs=ins + ins,
        outputs=outs + outs,
        message=HUMANEVAL_MESSAGE.format(prompt=problem.prompt.strip("\n")),
    )


def build_prompt(
    problem: Problem,
    tokenizer: Any = None,
    *,
    style: PromptStyle = "plain",
    prefill: bool = False,
    profile: str = "paper",
) -> RenderedPrompt:
    """The exact text sent to the engine, rendered by the inference service's own renderer
    (chat template or the plain R1 envelope, optional answer prefill; a non-paper prompt profile
    asks as the loop's solver does under that profile)."""
    if profile != "paper":
        return render_spec(tokenizer, solve_spec(as_task(problem), profile), style=style)
    return render(
        tokenizer,
        solve_prompt(as_task(problem)),
        task_type=problem.task_type,
        role=Role.SOLVE,
        style=style,
        prefill_answer=prefill,
    )


def parse(
    problem: Problem,
    completion: str,
    *,
    prefill: str = "",
    close_answers: bool = False,
    rendered: RenderedPrompt | None = None,
) -> Answer:
    """Parse the model's generation; a prefill is part of what the model wrote. With
    `close_answers` an unclosed but complete answer is cut and closed as the solver service does.
    A prompt rendered under a non-paper profile is parsed by that profile's parser."""
    response = prefill + completion
    if rendered is not None and rendered.spec is not None and rendered.spec.profile != "paper":
        return parse_solve(rendered.spec, problem.task_type, response)
    at = answer_complete_at(problem.task_type, Role.SOLVE, response) if close_answers else None
    return parse_answer(problem.task_type, response if at is None else close_answer(response, at))
