"""AZR's verification rules as data (azr-reference §2.6, §3, §10).

This module never executes model text. It builds the *jobs* the sandbox runs and turns the
sandbox's explicit statuses into decisions. It is the trusted side of the verifier: every
comparison, literal check and determinism decision happens here, in the worker, on the bytes a
sandboxed child handed back (which a hostile program fully controls), never in the child.

* **validation** (proposals): each input is evaluated in its own fresh sandboxed child (two calls)
  and once more in a second fork-server started with another PYTHONHASHSEED, in another input
  order; every run must succeed (an explicit ``ok`` status, never a substring of an error
  message), the three outputs must be equal values, and the gold output must be a literal (NaN,
  ``<X object at 0x..>`` or an output over the size cap make the proposal INVALID, not
  unsolvable);
* **deduction**: gold and answer are compared as *values* with Python ``==`` after a literal-only
  evaluation (1 == 1.0, sets/dicts order-free, tuple != list, exact floats);
* **abduction**: the gold program is re-run on the agent's input and its output compared with the
  gold value; any valid pre-image counts;
* **induction**: the agent's program must reproduce every hidden pair (binary).

Value comparisons use `literal_value`, a small evaluator that only builds literals, with a cap
on the text size and the number of nodes, so the cost of one item's comparison is bounded and
can't reach another item (the texts are built from constants and containers: no code runs).
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from azr.core.checks import (
    CheckResult,
    check_expression,
    check_program,
    parse_arguments,
    walk_nodes,
)
from azr.core.tasks import TaskType


class ExecStatus(StrEnum):
    """What happened to one execution; decided from mechanisms, never from message text."""

    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"
    MEMORY = "memory"
    FORBIDDEN = "forbidden"
    OUTPUT_LIMIT = "output_limit"


# --- literals -------------------------------------------------------------------------------


class NotALiteral(ValueError):
    """The text is not a Python literal this evaluator accepts."""


_LITERAL_CALLS = {"set": set, "frozenset": frozenset}


def _build(node: ast.expr) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Tuple):
        return tuple(_build(e) for e in node.elts)
    if isinstance(node, ast.List):
        return [_build(e) for e in node.elts]
    if isinstance(node, ast.Set):
        return {_build(e) for e in node.elts}
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise NotALiteral("dict unpacking is not a literal")
        return {_build(k): _build(v) for k, v in zip(node.keys, node.values, strict=True) if k}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = _build(node.operand)
        if isinstance(operand, bool) or not isinstance(operand, int | float | complex):
            raise NotALiteral("sign applied to a non-number")
        return -operand if isinstance(node.op, ast.USub) else +operand
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub):
        # only complex literals such as 1+2j / -1-0j, as repr writes them
        left, right = _build(node.left), _build(node.right)
        if not (isinstance(left, int | float) and isinstance(right, complex)):
            raise NotALiteral("arithmetic is not a literal")
        return left + right if isinstance(node.op, ast.Add) else left - right
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _LITERAL_CALLS
        and not node.keywords
        and len(node.args) <= 1
    ):
        ctor = _LITERAL_CALLS[node.func.id]
        return ctor(_build(node.args[0])) if node.args else ctor()
    raise NotALiteral(f"{type(node).__name__} is not a literal")


MAX_LITERAL_CHARS = 100_000
MAX_LITERAL_NODES = 20_000


def literal_value(text: str, max_chars: int = MAX_LITERAL_CHARS) -> Any:
    """Evaluate a Python literal (what ``repr`` writes for builtin values), nothing else.

    Accepts constants, tuples, lists, dicts, sets, ``set()``/``frozenset(...)`` and signed or
    complex numbers. Raises `NotALiteral` for anything else (names like ``nan``/``inf``, object
    reprs, calls, arithmetic) and for a text over `max_chars` or `MAX_LITERAL_NODES` nodes."""
    if not isinstance(text, str):
        raise NotALiteral("not a text")
    if len(text) > max_chars:
        raise NotALiteral(f"over {max_chars} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise NotALiteral(f"not parseable: {type(exc).__name__}") from None
    if len(walk_nodes(tree)) > MAX_LITERAL_NODES:  # the text's size bounds the list
        raise NotALiteral(f"over {MAX_LITERAL_NODES} nodes")
    try:
        return _build(tree.body)
    except TypeError as exc:  # unhashable set member / dict key
        raise NotALiteral(str(exc)) from None
    except RecursionError:
        raise NotALiteral("nested too deeply") from None


def literal_equal(a: str, b: str, max_chars: int = MAX_LITERAL_CHARS) -> bool:
    """Python ``==`` of two literals; False when either is not a literal."""
    try:
        return bool(literal_value(a, max_chars) == literal_value(b, max_chars))
    except (NotALiteral, RecursionError):
        return False


def is_literal(text: str, max_chars: int = MAX_LITERAL_CHARS) -> bool:
    try:
        literal_value(text, max_chars)
    except NotALiteral:
        return False
    return True


def same_value(a: str, b: str, max_chars: int = MAX_LITERAL_CHARS) -> bool:
    """Two outputs of one program on one input agree: the same text, or equal literals."""
    return a == b or literal_equal(a, b, max_chars)


def round_trips(text: str, value: Any) -> bool:
    """Does `text` (a repr) evaluate back to a value equal to `value`?"""
    try:
        return bool(literal_value(text) == value)
    except NotALiteral:
        return False
    except Exception:  # a hostile __eq__; executed only inside the sandbox
        return False


# --- jobs (what a sandbox child runs) -------------------------------------------------------


def call_job(
    program: str, args: Sequence[str], *, repeat: int = 1, timeout_s: float, max_output: int
) -> dict[str, Any]:
    """Call ``f`` of `program` `repeat` times on each argument text; `timeout_s` per input.
    The sandbox runs it as one evaluation per input (`evaluation_jobs`)."""
    return {
        "program": program,
        "args": list(args),
        "repeat": repeat,
        "timeout_s": timeout_s,
        "max_output": max_output,
    }


def evaluation_jobs(job: dict[str, Any]) -> list[dict[str, Any]]:
    """One fork-server job per (program, input): each runs in its own fresh child, so no
    input's result can depend on which inputs ran before it."""
    return [
        {
            "program": job["program"],
            "input": text,
            "repeat": job["repeat"],
            "timeout_s": job["timeout_s"],
            "max_output": job["max_output"],
        }
        for text in job["args"]
    ]


# --- results --------------------------------------------------------------------------------


@dataclass
class CallOutcome:
    """One input's result inside a call job."""

    status: ExecStatus
    output: str | None = None
    error: str | None = None
    deterministic: bool | None = None
    literal: bool | None = None


@dataclass
class JobResult:
    """What a sandbox child reported (or what the parent concluded when it died)."""

    status: ExecStatus
    error: str | None = None
    duration_ms: float = 0.0
    calls: list[CallOutcome] = field(default_factory=list)
    values: list[bool] = field(default_factory=list)

    @classmethod
    def from_evaluations(
        cls, raws: Sequence[dict[str, Any]], repeat: int, max_output: int = MAX_LITERAL_CHARS
    ) -> JobResult:
        """Assemble what the fork-server parsed for each input's evaluation. Whether two calls
        agree and whether an output is a literal is decided here, not by the child."""
        calls = []
        for raw in raws:
            status = _status_of(raw.get("status"))
            outputs = raw.get("outputs")
            if status is not ExecStatus.OK:
                calls.append(CallOutcome(status, error=_text_or_none(raw.get("error"))))
                continue
            if (
                not isinstance(outputs, list)
                or len(outputs) != repeat
                or not all(isinstance(o, str) for o in outputs)
            ):
                calls.append(CallOutcome(ExecStatus.ERROR, error="malformed sandbox result"))
                continue
            first = outputs[0]
            calls.append(
                CallOutcome(
                    ExecStatus.OK,
                    output=first,
                    deterministic=(
                        all(same_value(o, first, max_output) for o in outputs[1:])
                        if repeat > 1
                        else None
                    ),
                    literal=is_literal(first, max_output),
                )
            )
        duration = sum(float(r.get("duration_ms") or 0.0) for r in raws)
        return cls(ExecStatus.OK, None, duration, calls=calls)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> JobResult:
        calls = [
            CallOutcome(
                status=_status_of(c.get("status", "error")),
                output=c.get("output"),
                error=c.get("error"),
                deterministic=c.get("deterministic"),
                literal=c.get("literal"),
            )
            for c in raw.get("calls") or []
        ]
        return cls(
            status=_status_of(raw.get("status", "error")),
            error=raw.get("error"),
            duration_ms=float(raw.get("duration_ms") or 0.0),
            calls=calls,
            values=[bool(v) for v in raw.get("values") or []],
        )

    def first_failure(self) -> tuple[ExecStatus, str | None] | None:
        if self.status is not ExecStatus.OK:
            return self.status, self.error
        for call in self.calls:
            if call.status is not ExecStatus.OK:
                return call.status, call.error
        return None


def _status_of(value: Any) -> ExecStatus:
    try:
        return ExecStatus(value)
    except ValueError:
        return ExecStatus.ERROR


def _text_or_none(value: Any) -> str | None:
    return value[:500] if isinstance(value, str) else None


def static_status(check: CheckResult) -> ExecStatus:
    """A statically refused text: `forbidden` for bans, `error` for syntax/size/shape."""
    return ExecStatus.FORBIDDEN if check.kind == "banned" else ExecStatus.ERROR


# --- validation -----------------------------------------------------------------------------


@dataclass
class ValidationOutcome:
    valid: bool
    status: str
    outputs: list[str] = field(default_factory=list)
    reason: str | None = None


def validation_precheck(
    task_type: TaskType,
    program: str,
    inputs: Sequence[str],
    banned_modules: Sequence[str],
    *,
    max_program_chars: int = 20_000,
) -> ValidationOutcome | None:
    """Static part of validation; an outcome when the proposal is refused before running."""
    if not inputs:
        return ValidationOutcome(False, ExecStatus.ERROR, reason="no inputs")
    check = check_program(program, banned_modules=banned_modules, max_chars=max_program_chars)
    if not check.ok:
        return ValidationOutcome(False, static_status(check), reason=f"program: {check.reason}")
    for i, text in enumerate(inputs):
        check = check_expression(text, banned_modules=banned_modules)
        if not check.ok:
            return ValidationOutcome(
                False, static_status(check), reason=f"input {i}: {check.reason}"
            )
    return None


def interpret_validation(
    primary: JobResult, secondary: JobResult | None, n_inputs: int
) -> ValidationOutcome:
    """Decide validity from the two-call primary run and the other-hash-seed secondary run."""
    failure = primary.first_failure()
    if failure:
        status, error = failure
        return ValidationOutcome(False, status, reason=error or status.value)
    if len(primary.calls) != n_inputs:
        return ValidationOutcome(False, ExecStatus.ERROR, reason="sandbox returned no result")
    outputs = [c.output or "" for c in primary.calls]
    for i, call in enumerate(primary.calls):
        if call.deterministic is not True:
            return ValidationOutcome(
                False, ExecStatus.OK, reason=f"input {i}: two calls returned different results"
            )
        if call.literal is not True:
            return ValidationOutcome(
                False,
                ExecStatus.OK,
                reason=f"input {i}: output {call.output!r:.80} does not evaluate back to an "
                "equal value",
            )
    if secondary is not None:
        failure = secondary.first_failure()
        if failure:
            status, error = failure
            return ValidationOutcome(
                False, status, reason=f"second process: {error or status.value}"
            )
        other = [c.output or "" for c in secondary.calls]
        if len(other) != len(outputs) or not all(
            same_value(a, b) for a, b in zip(outputs, other, strict=True)
        ):
            return ValidationOutcome(
                False,
                ExecStatus.OK,
                reason="non-deterministic across processes (another hash seed changed an output)",
            )
    return ValidationOutcome(True, ExecStatus.OK, outputs=outputs)


# --- verification ---------------------------------------------------------------------------


@dataclass
class Verdict:
    correct: bool
    status: str
    reason: str | None = None


@dataclass
class VerifyItem:
    task_type: TaskType
    program: str
    answer: str
    input: str | None = None
    output: str | None = None
    hidden: list[tuple[str, str]] = field(default_factory=list)


def import_lines(program: str) -> list[str]:
    """The top-level import statements of a program, as source lines (prepended to an induction
    answer, as the official grader prepends the gold program's imports)."""
    try:
        tree = ast.parse(program)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    lines = program.splitlines()
    out: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            end = node.end_lineno or node.lineno
            out.append("\n".join(lines[node.lineno - 1 : end]))
    return out


@dataclass
class VerifyPlan:
    """Stage 1 of verifying one item: a final verdict already, or a call job to run first."""

    verdict: Verdict | None = None
    call: dict[str, Any] | None = None
    compare: list[tuple[str, str]] = field(default_factory=list)


def plan_verification(
    item: VerifyItem, banned_modules: Sequence[str], *, timeout_s: float, max_output: int
) -> VerifyPlan:
    t = item.task_type
    if t is TaskType.DEDUCTION:
        if item.output is None:
            return VerifyPlan(Verdict(False, ExecStatus.ERROR, "deduction needs the gold output"))
        if item.answer.strip() == item.output.strip():
            return VerifyPlan(Verdict(True, ExecStatus.OK))
        return VerifyPlan(compare=[(item.output, item.answer)])
    if t is TaskType.ABDUCTION:
        if item.output is None:
            return VerifyPlan(Verdict(False, ExecStatus.ERROR, "abduction needs the gold output"))
        check = check_expression(item.answer, banned_modules=banned_modules)
        if not check.ok:
            return VerifyPlan(Verdict(False, static_status(check), f"answer: {check.reason}"))
        job = call_job(item.program, [item.answer], timeout_s=timeout_s, max_output=max_output)
        return VerifyPlan(call=job)
    if not item.hidden:
        return VerifyPlan(Verdict(False, ExecStatus.ERROR, "induction needs hidden pairs"))
    program = "\n".join([*import_lines(item.program), item.answer])
    check = check_program(program, banned_modules=banned_modules)
    if not check.ok:
        return VerifyPlan(Verdict(False, static_status(check), f"answer: {check.reason}"))
    for i, (text, _) in enumerate(item.hidden):
        if isinstance(parse_arguments(text), str):
            return VerifyPlan(Verdict(False, ExecStatus.ERROR, f"hidden input {i} is malformed"))
    job = call_job(
        program,
        [inp for inp, _ in item.hidden],
        timeout_s=timeout_s * len(item.hidden),
        max_output=max_output,
    )
    return VerifyPlan(call=job)


def golds_of(item: VerifyItem) -> list[str]:
    if item.task_type is TaskType.INDUCTION:
        return [out for _, out in item.hidden]
    return [item.output or ""]


def after_call(item: VerifyItem, result: JobResult) -> VerifyPlan:
    """Stage 2: the program ran; decide, or list the pairs that need a value comparison."""
    failure = result.first_failure()
    if failure:
        status, error = failure
        return VerifyPlan(Verdict(False, status, error))
    golds = golds_of(item)
    if len(result.calls) != len(golds):
        return VerifyPlan(Verdict(False, ExecStatus.ERROR, "sandbox returned no result"))
    pending = [
        (gold, call.output or "")
        for gold, call in zip(golds, result.calls, strict=True)
        if (call.output or "").strip() != gold.strip()
    ]
    if not pending:
        return VerifyPlan(Verdict(True, ExecStatus.OK))
    return VerifyPlan(compare=pending)


def compare_values(pairs: Sequence[tuple[str, str]], max_chars: int) -> list[bool]:
    """Python ``==`` of literal pairs, here on the trusted side; each text is capped, so one
    pair's cost is bounded whatever the texts are built to do (hash collisions included)."""
    return [literal_equal(gold, answer, max_chars) for gold, answer in pairs]


def after_compare(result: JobResult, n_pairs: int) -> Verdict:
    failure = result.first_failure()
    if failure:
        status, error = failure
        return Verdict(False, status, error)
    if len(result.values) != n_pairs:
        return Verdict(False, ExecStatus.ERROR, "sandbox returned no comparison")
    if all(result.values):
        return Verdict(True, ExecStatus.OK)
    wrong = sum(1 for v in result.values if not v)
    return Verdict(False, ExecStatus.OK, f"{wrong} of {n_pairs} value(s) differ")
