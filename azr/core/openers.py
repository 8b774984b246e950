"""The "opener" prompt profiles: the format described in words, and a reply the model completes.

A 135M model copies any literal example answer it is shown and, right after a pre-opened code
fence, closes the fence at once (docs/algorithm.md, "Prompt profiles"). These prompts therefore
hold no example answer at all: they say in words what to write, and the reply is started for the
model with an *opener* that ends where the answer begins:

| role | opener | the model writes | ends at |
|---|---|---|---|
| deduction solve | ``f(<input>) returns `` | the value | line end |
| abduction solve | ``f(`` | the arguments, ``)`` | line end |
| induction solve | a python fence, ``def f(`` | the function | closing fence |
| deduction/abduction propose | a python fence, ``def f(`` | the function | closing fence |
| (second stage) | the program's reply, then ``INPUT_FOLLOWUP`` | the arguments of one call, ``)`` | line end |
| induction propose | a python fence, ``f(`` | one call per line, then a ``#`` hint | closing fence |

Parsing is strict on purpose: a deduction answer must be a Python literal, an abduction answer a
literal argument list closed by ``)``, programs must parse and define ``f``. Copying anything the
prompt shows (the call, a signature, a word of the instructions) is therefore either not
well-formed or verified by the executor like any other answer.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence

from azr.core.checks import parse_arguments
from azr.core.parsing import (
    drop_test_calls,
    quiet_parse_module,
    rename_entry_to_f,
    split_imports,
    why_no_entry,
)
from azr.core.tasks import Answer, Proposal, Role, Task, TaskType
from azr.core.verification import NotALiteral, literal_value

OPENER_SYSTEM = (
    "You are an expert Python programmer. You answer exactly in the format the user asks for, "
    "with no extra text."
)

FENCE = "```"
CODE_OPENER = f"{FENCE}python\ndef f("
CALLS_OPENER = f"{FENCE}python\nf("
# A program proposal is written in two stages: the model writes the function after CODE_OPENER and
# stops at its closing fence; the service then appends this and the model writes the arguments of
# one call. Asked for both in one reply, SmolLM2-135M closed the program and explained it in prose
# instead of writing the input (docs/algorithm.md, "Prompt profiles").
INPUT_FOLLOWUP = "\n\nf("

# The closing tag of the think variant's answer; an answer line ends there too.
ANSWER_CLOSE = "</answer>"

_RULES = """\
Rules for the program: the function is named `f`, takes at least one argument and returns a value; \
it is deterministic (no randomness, time, files, network, printing or input); it imports nothing \
unless it must, and then only at the top; it finishes within a second."""


def _fenced(code: str) -> str:
    return f"{FENCE}python\n{code}\n{FENCE}"


def _call(args: str) -> str:
    return f"f({args})"


# ---------------------------------------------------------------- solver prompts


def solve_text(task: Task) -> str:
    """The solver's task text: what is given, what to find, and the reply's format in words."""
    if task.task_type is TaskType.DEDUCTION:
        return (
            f"Here is a Python function.\n\n{_fenced(task.source)}\n\n"
            f"Work out what it returns for the call {_call(task.input)} without running it. "
            "Reply with one line: the call, the word returns, then the returned value written as "
            "a Python literal (strings in quotes, lists in brackets)."
        )
    if task.task_type is TaskType.ABDUCTION:
        return (
            f"Here is a Python function.\n\n{_fenced(task.source)}\n\n"
            f"Find an input for which it returns exactly {task.output}. Reply with one line: the "
            "call of f on your input, with every argument written as a Python literal, then the "
            "word returns and that value."
        )
    lines = "\n".join(f"{_call(i)} returns {o}" for i, o in task.visible_pairs())
    hint = (
        f"\n\nHint from the person who chose these inputs: {task.message}" if task.message else ""
    )
    return (
        f"A hidden Python function f gives these results:\n\n{lines}{hint}\n\n"
        "Write f so that it gives these results and the same kind of result on other inputs. "
        "Reply with the function only, in a python code block."
    )


def solve_opener(task: Task) -> str:
    """The start of the solver's reply; the model continues it."""
    if task.task_type is TaskType.DEDUCTION:
        # One line: a multi-line input is joined so the answer still starts on this line.
        return f"{_call(' '.join(task.input.split()))} returns "
    if task.task_type is TaskType.ABDUCTION:
        return "f("
    return CODE_OPENER


def solve_stop(task_type: TaskType) -> list[str]:
    """Where a solver's reply ends: the line for a value or a call, the fence for a program."""
    return ["\n", ANSWER_CLOSE] if task_type is not TaskType.INDUCTION else [FENCE, ANSWER_CLOSE]


# ---------------------------------------------------------------- proposer prompts


def _reference_text(ref: Task) -> str:
    shown = _fenced(ref.source)
    if ref.outputs:
        return f"{shown}\n{_call(ref.input)} returns {ref.output}"
    return shown


def propose_text(
    task_type: TaskType,
    references: Sequence[Task],
    banned: Sequence[str],
    *,
    n_inputs: int = 10,
) -> str:
    """The proposer's task text. Deduction/abduction: a new program and one input, shown the
    references it must differ from. Induction: ``n_inputs`` calls of ``references[0]`` and a hint."""
    task_type = TaskType(task_type)
    if task_type is TaskType.INDUCTION:
        if not references:
            raise ValueError("an induction proposal needs one reference program")
        return (
            f"Here is a Python function.\n\n{_fenced(references[0].source)}\n\n"
            f"Someone will see what it returns for some of your inputs and must then write it. "
            f"Choose {n_inputs} different inputs that together show everything it does. Reply "
            f"with one python code block: {n_inputs} lines, each a call of f on one input with "
            "its arguments written as Python literals, then one last comment line that starts "
            "with # and says in words what f does."
        )
    goal = (
        "someone will see the function and your input and must work out what it returns"
        if task_type is TaskType.DEDUCTION
        else "someone will see the function and what it returns for your input and must find "
        "an input that gives that value"
    )
    refs = "\n\n".join(_reference_text(r) for r in references)
    avoid = (
        f"\n\nIt must be clearly different from these existing functions:\n\n{refs}" if refs else ""
    )
    words = f"\nDo not use these words anywhere: {', '.join(banned)}." if banned else ""
    return (
        f"Invent a new Python function f and one input for it: {goal}. Make it take a few steps "
        f"of careful thought, but keep it solvable.\n\n{_RULES}{words}{avoid}\n\n"
        "Reply with a python code block that holds the function, then a code block labelled "
        "input that holds your input: the arguments of one call of f, written as Python "
        "literals."
    )


def propose_opener(task_type: TaskType) -> str:
    return CALLS_OPENER if TaskType(task_type) is TaskType.INDUCTION else CODE_OPENER


def propose_stop(task_type: TaskType) -> list[str]:
    """Both kinds of proposal end at their block's closing fence (a program proposal's first
    stage too) or at the closing tag."""
    return [FENCE, ANSWER_CLOSE]


def propose_followup(task_type: TaskType) -> str:
    """The second stage's opener of a proposal ("" when it has none: induction)."""
    return "" if TaskType(task_type) is TaskType.INDUCTION else INPUT_FOLLOWUP


def followup_stop(task_type: TaskType) -> list[str]:
    """The second stage writes one call's arguments: it ends at the line end."""
    return ["\n", ANSWER_CLOSE]


def opener_for(task_type: TaskType, role: Role, task: Task | None = None) -> str:
    """The opener of a role; a solver's needs its task (deduction writes the call)."""
    if Role(role) is Role.PROPOSE:
        return propose_opener(task_type)
    if task is None:
        raise ValueError("a solver's opener needs its task")
    return solve_opener(task)


def stop_for(task_type: TaskType, role: Role) -> list[str]:
    if Role(role) is Role.PROPOSE:
        return propose_stop(task_type)
    return solve_stop(TaskType(task_type))


# ---------------------------------------------------------------- parsing


def _after_opener(response: str, opener: str) -> tuple[str, bool]:
    """The text the model wrote after its opener, cut at the closing tag; False when the
    response does not contain the opener (it was not produced by this profile)."""
    at = response.find(opener) if opener else 0
    if at == -1:
        return "", False
    body = response[at + len(opener) :]
    end = body.find(ANSWER_CLOSE)
    return (body if end == -1 else body[:end]), True


def _until_fence(text: str) -> str:
    end = text.find(FENCE)
    return text if end == -1 else text[:end]


def _first_line(text: str) -> str:
    return text.split("\n", 1)[0]


def _strip_sentence_end(value: str) -> str:
    """'4.' is a float, but 'returns 'ab'.' ends a sentence: drop a final period only when the
    value does not parse with it and does without."""
    if value.endswith(".") and not _is_literal(value) and _is_literal(value[:-1]):
        return value[:-1].rstrip()
    return value


def _is_literal(text: str) -> bool:
    try:
        literal_value(text)
    except NotALiteral:
        return False
    return True


def call_arguments(text: str) -> str | None:
    """The argument text of a call whose ``f(`` was already written: ``text`` up to the ``)`` that
    closes it. None when no ``)`` closes a valid argument list of literals."""
    for at, char in enumerate(text):
        if char != ")":
            continue
        args = text[:at].strip()
        call = parse_arguments(args)
        if isinstance(call, str):
            continue
        if args and _literal_arguments(call):
            return args
        return None
    return None


def _literal_arguments(call: ast.Call) -> bool:
    values = [*call.args, *(kw.value for kw in call.keywords)]
    if any(isinstance(v, ast.Starred) for v in call.args) or any(
        kw.arg is None for kw in call.keywords
    ):
        return False
    for node in values:
        try:
            literal_value(ast.unparse(node))
        except NotALiteral:
            return False
    return bool(values)


def parse_solution(task_type: TaskType, response: str, opener: str) -> Answer:
    """Parse a solver's reply written after ``opener``. ``format_ok`` means well-formed: a
    literal (deduction), a literal argument list closed by ``)`` (abduction), a program that
    parses and defines ``f`` (induction)."""
    task_type = TaskType(task_type)
    body, found = _after_opener(response, opener)
    if not found:
        return Answer(task_type, "", False, "the reply does not start with its opener")
    if task_type is TaskType.DEDUCTION:
        value = _strip_sentence_end(_first_line(body).strip())
        if not value:
            return Answer(task_type, "", False, "empty output")
        if not _is_literal(value):
            return Answer(task_type, value, False, "the output is not a Python literal")
        return Answer(task_type, value, True)
    if task_type is TaskType.ABDUCTION:
        args = call_arguments(_first_line(body))
        if args is None:
            return Answer(task_type, "", False, "no literal argument list closed by ')'")
        return Answer(task_type, args, True)
    return _parse_program(opener, body, task_type)


def _parse_program(opener: str, body: str, task_type: TaskType) -> Answer:
    code = _code_of(opener, body)
    if code is None:
        return Answer(task_type, "", False, "no program that parses and defines f")
    return Answer(task_type, code, True)


def _code_of(opener: str, body: str) -> str | None:
    """The program: the opener's code part plus the body up to the closing fence, cut back to the
    longest run of whole lines that parses and defines ``f`` (the end may be cut by the limit)."""
    head = opener.split("\n", 1)[1] if opener.startswith(FENCE) else opener
    lines = (head + _until_fence(body)).split("\n")
    for end in range(len(lines), 0, -1):
        code = "\n".join(lines[:end]).rstrip()
        if not code:
            continue
        renamed = rename_entry_to_f(code)
        if renamed is None or "def f(" not in renamed:
            continue
        return drop_test_calls(renamed).strip("\n")
    return None


def _f_call(node: ast.stmt) -> ast.Call | None:
    """The ``f(...)`` call a top-level statement makes: ``f(x)``, ``print(f(x))``,
    ``y = f(x)`` or ``assert f(x) == y``."""
    value: ast.expr | None = None
    if isinstance(node, ast.Expr):
        value = node.value
        if (
            isinstance(value, ast.Call)
            and isinstance(value.func, ast.Name)
            and value.func.id == "print"
            and len(value.args) == 1
        ):
            value = value.args[0]
    elif isinstance(node, ast.Assign):
        value = node.value
    elif isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare):
        value = node.test.left
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "f":
        return value
    return None


def _arguments_source(code: str, call: ast.Call) -> str | None:
    """The argument text of ``call`` as written, when every argument is a literal."""
    if not _literal_arguments(call):
        return None
    parts = [ast.get_source_segment(code, a) for a in call.args]
    parts += [f"{kw.arg}={ast.get_source_segment(code, kw.value)}" for kw in call.keywords]
    if any(p is None for p in parts):
        return None
    return ", ".join(p for p in parts if p is not None)


def parse_proposition(
    task_type: TaskType,
    response: str,
    opener: str,
    *,
    n_inputs: int = 10,
    reference: Task | None = None,
) -> Proposal:
    """Parse a proposer's reply written after ``opener`` (one python block)."""
    task_type = TaskType(task_type)
    proposal = Proposal(task_type=task_type)
    body, found = _after_opener(response, opener)
    if not found:
        proposal.error = "the reply does not start with its opener"
        return proposal
    if task_type is TaskType.INDUCTION:
        return _parse_induction(proposal, opener, body, n_inputs, reference)
    head = opener.split("\n", 1)[1]
    code = (head + _until_fence(body)).rstrip()
    try:
        tree = quiet_parse_module(code)
    except (SyntaxError, ValueError):
        proposal.error = why_no_entry(code)
        return proposal
    given = _input_block(body)
    if given is None:
        calls = [c for c in (_f_call(n) for n in tree.body) if c is not None]
        if not calls:
            proposal.error = "no ```input block after the program and no call of f in it"
            return proposal
        given = _arguments_source(code, calls[-1])
        if given is None:
            proposal.error = "the call of f does not use literal arguments"
            return proposal
    program = _without_calls(code, tree)
    renamed = rename_entry_to_f(program)
    if renamed is None or "def f(" not in renamed:
        proposal.error = why_no_entry(program)
        return proposal
    proposal.program, proposal.imports = split_imports(renamed)
    proposal.inputs = [given]
    proposal.format_ok = True
    return proposal


def _input_block(body: str) -> str | None:
    """The input written after the program's closing fence, when it is one literal argument
    list: the second stage's call line (``f(`` + arguments + ``)``), else an ```input block."""
    code_end = body.find(FENCE)
    if code_end == -1:
        return None
    rest = body[code_end + len(FENCE) :]
    if rest.startswith(INPUT_FOLLOWUP):
        return call_arguments(_first_line(rest[len(INPUT_FOLLOWUP) :]))
    start = rest.find(f"{FENCE}input")
    if start == -1:
        return None
    inner = rest[start + len(FENCE) + len("input") :]
    close = inner.find(FENCE)
    given = (inner if close == -1 else inner[:close]).strip()
    call = parse_arguments(given) if given else "empty"
    if isinstance(call, str) or not _literal_arguments(call):
        return None
    return given


def _without_calls(code: str, tree: ast.Module) -> str:
    """The program without the top-level statements that call ``f`` (the input line, tests)."""
    drop: set[int] = set()
    for node in tree.body:
        if _f_call(node) is not None and node.end_lineno is not None:
            drop.update(range(node.lineno - 1, node.end_lineno))
    kept = [line for i, line in enumerate(code.split("\n")) if i not in drop]
    return "\n".join(kept).strip("\n")


def _parse_induction(
    proposal: Proposal, opener: str, body: str, n_inputs: int, reference: Task | None
) -> Proposal:
    if reference is None:
        proposal.error = "induction proposal parsed without its reference program"
        return proposal
    proposal.program = reference.program
    proposal.imports = list(reference.imports)
    head = opener.split("\n", 1)[1]
    lines = (head + _until_fence(body)).split("\n")
    inputs: list[str] = []
    hint = ""
    for line in lines:
        text = line.strip()
        if text.startswith("#"):
            hint = text.lstrip("#").strip().removeprefix("Hint:").strip() or hint
        elif text.startswith("f("):
            args = call_arguments(text[2:])
            if args is not None:
                inputs.append(args)
    if len(inputs) < n_inputs:
        proposal.error = f"{len(inputs)} calls of f with literal arguments, need {n_inputs}"
        return proposal
    if not hint:
        proposal.error = "no hint (a comment line saying what f does)"
        return proposal
    proposal.inputs = inputs[:n_inputs]
    proposal.message = hint
    proposal.format_ok = True
    return proposal
