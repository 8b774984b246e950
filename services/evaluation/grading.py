"""Turn a parsed answer into the executor request that grades it. Nothing is executed here: every
answer is checked inside the executor's sandbox (`/v1/verify` for CRUXEval, `/v1/run` for
HumanEval's tests)."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

from azr.core.tasks import Task, TaskType

from .datasets import Bench, Problem


@dataclass(frozen=True)
class GradeRequest:
    """One executor call: `route` is ``verify`` or ``run``; `item` is its JSON item."""

    route: str
    item: dict[str, Any]


def cruxeval_request(problem: Problem, answer: str) -> GradeRequest:
    if problem.bench is Bench.CRUXEVAL_O:
        # Deduction: the answer is the predicted output, compared by literal equality.
        item = {
            "task_type": "deduction",
            "program": problem.program,
            "input": problem.input,
            "output": problem.output,
            "answer": answer,
        }
    elif problem.bench is Bench.CRUXEVAL_I:
        # Abduction: any input that the program maps to the gold output counts.
        item = {
            "task_type": "abduction",
            "program": problem.program,
            "output": problem.output,
            "answer": answer,
        }
    else:
        raise ValueError(f"{problem.bench} is not CRUXEval")
    return GradeRequest("verify", item)


class _Rename(ast.NodeTransformer):
    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        if node.name == self.old:
            node.name = self.new
        self.generic_visit(node)
        return node

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id == self.old:
            node.id = self.new
        return node


def _defines(tree: ast.Module, name: str) -> bool:
    return any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name
        for node in tree.body
    )


def humaneval_candidate(problem: Problem, answer: str) -> str:
    """The model's program, with its entry function under the benchmark's name.

    The AZR solver format asks for a function named `f`; a HumanEval test calls the entry point
    by its own name. An answer that defines `f` but not the entry point gets `f` renamed (with
    its recursive calls). Unparseable text is returned as is and fails in the sandbox."""
    try:
        tree = ast.parse(answer)
    except (SyntaxError, ValueError):
        return answer
    if _defines(tree, problem.entry_point) or not _defines(tree, "f"):
        return answer
    return ast.unparse(_Rename("f", problem.entry_point).visit(tree))


# The executor's `/v1/run` calls `f(<input>)`: this wrapper runs the tests and returns True. The
# candidate is bound to a private name first, because an entry point may itself be called `f`
# (HumanEval/106) and the wrapper would otherwise shadow it.
_CANDIDATE = "_eval_candidate"
_CHECK_WRAPPER = "\n\ndef f():\n    check({candidate})\n    return True\n"


def humaneval_program(problem: Problem, answer: str) -> str:
    """Prompt (imports, helpers, the stub) + the candidate (redefines the entry point) + the
    problem's tests + a wrapper `f()` that runs them on the candidate."""
    candidate = humaneval_candidate(problem, answer)
    return (
        problem.prompt.rstrip()  # a docstring alone is a valid function body
        + "\n\n\n"
        + candidate.strip()
        + f"\n\n\n{_CANDIDATE} = {problem.entry_point}\n\n\n"
        + problem.test.strip()
        + _CHECK_WRAPPER.format(candidate=_CANDIDATE)
    )


def humaneval_request(problem: Problem, answer: str) -> GradeRequest:
    return GradeRequest("run", {"program": humaneval_program(problem, answer), "input": ""})


def task_request(task: Task, answer: str) -> GradeRequest:
    """A held-out AZR task, graded as the loop grades its solver: abduction by re-execution,
    deduction by literal equality, induction on the hidden pairs."""
    item: dict[str, Any] = {
        "task_type": task.task_type.value,
        "program": task.source,
        "answer": answer,
    }
    if task.task_type is TaskType.INDUCTION:
        item["hidden"] = [{"input": i, "output": o} for i, o in task.hidden_pairs()]
        if task.imports:
            item["imports"] = list(task.imports)
    else:
        item["input"] = task.input
        item["output"] = task.output
    return GradeRequest("verify", item)


def grade_request(problem: Problem, answer: str) -> GradeRequest:
    if problem.task is not None:
        return task_request(problem.task, answer)
    if problem.bench is Bench.HUMANEVAL:
        return humaneval_request(problem, answer)
    return cruxeval_request(problem, answer)


def gold_answer(problem: Problem) -> str:
    """A known-correct answer (to check the grader can succeed): the gold output, the gold input,
    or the canonical solution."""
    if problem.task is not None:
        task = problem.task
        if task.task_type is TaskType.DEDUCTION:
            return task.output
        if task.task_type is TaskType.ABDUCTION:
            return task.input
        return task.program  # its imports travel with the grading request
    if problem.bench is Bench.CRUXEVAL_O:
        return problem.output
    if problem.bench is Bench.CRUXEVAL_I:
        return problem.input
    return problem.program


def run_result_correct(result: dict[str, Any]) -> bool:
    """A HumanEval run passed iff it finished normally and the wrapper returned True."""
    return result.get("status") == "ok" and (result.get("output") or "").strip() == "True"
