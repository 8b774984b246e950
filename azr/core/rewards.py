"""Rewards (azr-reference §4): learnability for proposers, binary correctness for solvers,
and the format-aware composite values the trainer sees."""

from __future__ import annotations

import ast
import warnings
from collections.abc import Sequence

from azr.core.parsing import quiet_parse_module
from azr.core.tasks import Task, TaskType
from azr.core.verification import same_value
from azr.settings import SolverRewardScheme

BAD_FORMAT_REWARD = -1.0
WRONG_ANSWER_REWARD = -0.5
CORRECT_REWARD = 1.0


def learnability(solve_results: Sequence[bool]) -> float:
    """1 - mean solve rate over the Monte-Carlo rollouts; 0 when always or never solved.

    With 8 rollouts the values are 0, 0.125, ..., 0.875: a task one rollout in eight solves is
    worth the most (the reference's ``one_minus``, not 4p(1-p)).
    """
    if not solve_results:
        return 0.0
    rate = sum(bool(r) for r in solve_results) / len(solve_results)
    if rate == 0.0 or rate == 1.0:
        return 0.0
    return 1.0 - rate


def solver_reward(
    format_ok: bool, correct: bool, scheme: SolverRewardScheme = "format_aware"
) -> float:
    """format_aware (the reference): 1 for a well-formatted correct answer, -0.5 well-formatted
    but wrong, -1 bad format. binary: 1 correct, 0 otherwise, so that a task nobody solves
    teaches nothing (docs/algorithm.md, "The solver's reward")."""
    if scheme == "binary":
        return CORRECT_REWARD if format_ok and correct else 0.0
    if scheme != "format_aware":
        raise ValueError(f"unknown solver reward scheme {scheme!r}")
    if not format_ok:
        return BAD_FORMAT_REWARD
    return CORRECT_REWARD if correct else WRONG_ANSWER_REWARD


def proposer_reward(
    format_ok: bool, valid: bool, learnability: float, trivial_reward: float = -0.5
) -> float:
    """-1 for bad format or an invalid proposal; ``trivial_reward`` for a valid proposal nobody
    or everybody solves (learnability 0); otherwise the learnability itself.

    The official code uses -0.5 for the trivial case (the published models were trained so), the
    paper's equation says 0; ``trivial_reward`` (setting ``loop.trivial_reward``) picks.
    """
    if not format_ok or not valid:
        return BAD_FORMAT_REWARD
    if learnability <= 0.0:
        return trivial_reward
    return learnability


# ---------------------------------------------------------------- reward-hacking monitor


def _entry(tree: ast.Module) -> ast.FunctionDef | None:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "f":
            return node
    return None


def _own_returns(fn: ast.FunctionDef) -> list[ast.Return]:
    """Return statements of ``fn`` itself, not of functions or classes nested in it."""
    found: list[ast.Return] = []
    stack: list[ast.AST] = list(fn.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Return):
            found.append(node)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            continue
        stack.extend(ast.iter_child_nodes(node))
    return found


def _param_names(fn: ast.FunctionDef) -> list[str]:
    a = fn.args
    names = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
    names += [p.arg for p in (a.vararg, a.kwarg) if p is not None]
    return names


def _literal(text: str) -> tuple[bool, object]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return True, ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False, None


def _classify_ast(fn: ast.FunctionDef) -> str | None:
    params = _param_names(fn)
    returns = _own_returns(fn)
    if not returns:
        return None
    values = [r.value for r in returns]
    if (
        all(isinstance(v, ast.Name) and v.id in params for v in values)
        and len({v.id for v in values if isinstance(v, ast.Name)}) == 1
    ):
        body = [
            s
            for s in fn.body
            if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
        ]
        # Only a bare "return x" (possibly after a docstring) is an identity for sure; with other
        # statements before it the parameter may have been mutated in place.
        if len(body) == 1:
            return "identity"
    if all(v is None or not any(isinstance(n, ast.Name) for n in ast.walk(v)) for v in values):
        return "constant"
    return None


def is_trivial_program(task: Task) -> str | None:
    """``"identity"``, ``"constant"`` or None: cheap flags for the reward-hacking monitor.

    From the AST: ``f`` is just ``return <parameter>`` (identity), or every return of ``f`` is an
    expression that reads no name at all (constant). From the outputs, when a task carries two or
    more pairs with distinct inputs: all outputs equal (constant), or every single-argument input
    equals its output (identity). A flag, not a validity rule.
    """
    try:
        tree = quiet_parse_module(task.program)
    except (SyntaxError, ValueError):
        return None
    fn = _entry(tree)
    if fn is not None:
        verdict = _classify_ast(fn)
        if verdict is not None:
            return verdict
    return _classify_outputs(task)


def echoes_input(task: Task) -> bool:
    """True when every output of ``task`` equals its input as the grader compares them (Python
    ``==`` of literals, else the same text): an answer copied from the prompt solves it
    (deduction: the input as the output; abduction: the output as the input), so training on it
    rewards copying, not reasoning. A program that is just ``return x`` of its only parameter is
    an echo whatever its inputs are written as (``dict(a=1)`` is no literal); ``f(x, y)`` returning
    ``x`` is not (its input is two values, its output one)."""
    pairs = list(zip(task.inputs, task.outputs, strict=False))
    if not pairs:
        return False
    if all(same_value(i.strip(), o.strip()) for i, o in pairs):
        return True
    try:
        fn = _entry(quiet_parse_module(task.program))
    except (SyntaxError, ValueError):
        return False
    return fn is not None and len(_param_names(fn)) == 1 and _classify_ast(fn) == "identity"


def copies_prompt(task: Task, answer: str) -> bool:
    """True when a deduction answer is the task's input or an abduction answer its output, as
    the grader compares values: the input-echo shortcut (docs/results.md, runs 7-10), right only
    on tasks that `echoes_input`. Induction answers are programs and never count."""
    if not answer or not task.inputs or not task.outputs:
        return False
    if task.task_type is TaskType.DEDUCTION:
        return same_value(answer.strip(), task.inputs[0].strip())
    if task.task_type is TaskType.ABDUCTION:
        return same_value(answer.strip(), task.outputs[0].strip())
    return False


def _classify_outputs(task: Task) -> str | None:
    pairs = list(zip(task.inputs, task.outputs, strict=False))
    if len(pairs) < 2 or len(set(task.inputs)) < 2:
        return None
    parsed_out = [_literal(out) for _, out in pairs]
    if all(ok for ok, _ in parsed_out):
        first = parsed_out[0][1]
        if all(_same(value, first) for _, value in parsed_out[1:]):
            return "constant"
    elif len({out.strip() for _, out in pairs}) == 1:
        return "constant"
    parsed_in = [_literal(inp) for inp, _ in pairs]
    if (
        all(ok for ok, _ in parsed_in)
        and all(ok for ok, _ in parsed_out)
        and all(_same(i, o) for (_, i), (_, o) in zip(parsed_in, parsed_out, strict=True))
    ):
        return "identity"
    return None


def _same(a: object, b: object) -> bool:
    # Same value and same type: 1 and True or [1] and (1,) are different behaviours here.
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:
        return False
