"""One job as a sandbox child receives it: the program and its argument list, each either
compiled on the trusted side into a marshalled code object or, where compiling could be costly,
as source for the child to compile within its own limits; behind a fixed binary header.

Why compile outside the child: CPython's tokenizer, parser and compiler touch a few hundred
kilobytes of inherited code and objects, which in a forked child is ~55 copy-on-write faults and
~200 µs of CPU per evaluation (`docs/executor.md`, "Performance"). The worker already parses the
same texts (static checks, `parse_arguments`) and they are size-capped by the API, so compiling
them there costs about as much again (measured at 0.5-4x the parse on hostile 20k-character
shapes) — with one exception: constant folding. ``'a'*4096 + 'a'*4096 + ...`` is folded
left to right into ever longer strings, quadratic in the chain (26 s for a 20k-character
program). Such a chain needs many ``+``: a text with more than `MAX_PLUS` of them goes to the
child as source, as every text did before, and is compiled there under its CPU limit; so does
a text whose code has a set constant (see `_compiled`).

The fork-server loads the job (`load`: one `marshal.loads` of bytes that only ever come from
`encode`) before it forks the job's child, which finds the tuple in memory; model code never
sees the bytes."""

from __future__ import annotations
import __future__

import marshal
import math
import struct
from functools import lru_cache
from types import CodeType
from typing import Any

from azr.core.checks import arguments_call

# what the fork-server reads of a job (repeat, max_output, timeout); the child gets the rest
HEADER = struct.Struct("!IId")
MAX_ERROR_CHARS = 500
# CRUXEval's 800 programs have at most 5 "+"; a fold chain costs its length squared
MAX_PLUS = 32
# Annotations are kept as text, never evaluated (`from __future__ import annotations`): how every
# program has run here so far (the child's compile inherited the flag from `sandbox_child`), so
# an annotation naming something undefined (`-> NoneType`, common in proposals) doesn't make a
# program invalid. The child's own compile of a source text uses the same flags.
COMPILE_FLAGS = __future__.annotations.compiler_flag


class CompileFailed(Exception):
    """The text is not a program (or not an argument list); the message is the job's error."""


def describe(exc: BaseException, limit: int = MAX_ERROR_CHARS) -> str:
    """``Class: message``, capped; survives a hostile ``__str__``."""
    try:
        text = f"{type(exc).__name__}: {exc}"
    except BaseException:
        text = type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def _has_set_constant(consts: tuple[object, ...]) -> bool:
    for const in consts:
        if isinstance(const, frozenset):
            return True
        if isinstance(const, CodeType) and _has_set_constant(const.co_consts):
            return True
        if isinstance(const, tuple) and _has_set_constant(const):
            return True
    return False


@lru_cache(maxsize=64)  # the primary and secondary fork-servers get the same texts
def _compiled(source: str, filename: str, mode: str) -> CodeType | str | None:
    """The code object; None where the child must compile it after all; the error text."""
    try:
        code = compile(source, filename, mode, COMPILE_FLAGS, dont_inherit=True, optimize=0)
    except Exception as exc:  # SyntaxError, ValueError (NUL), RecursionError, MemoryError
        return describe(exc)
    # A set display of constants (`{9, 1, 17}`, `x in {...}`) is a frozenset constant. marshal
    # writes it in its iteration order and the child re-inserts it in that order, which can lay
    # colliding items out differently from an insertion in source order: `list({9, 1, 17, 25})`
    # would give a .pyc's answer, not the source's. Such programs are compiled by the child.
    return None if _has_set_constant(code.co_consts) else code


def _part(source: str, filename: str, mode: str) -> CodeType | str:
    """The code object, or the source itself where the child has to compile it."""
    if source.count("+") > MAX_PLUS:
        return source
    got = _compiled(source, filename, mode)
    if got is None:
        return source
    if isinstance(got, str):
        raise CompileFailed(got)
    return got


def encode(program: str, arguments: str, repeat: int, max_output: int, timeout_s: float) -> bytes:
    """The bytes of one evaluation: `HEADER`, then one marshalled tuple for the child
    ``(program, arguments, repeat, max_output, cpu_s)``, the first two code objects (or source
    texts the child compiles, see `_part`), `cpu_s` the soft CPU limit (the timeout plus a second, whole). Raises
    `CompileFailed` for a text that does not compile: the job's error, and no child is needed."""
    code = _part(program, "<program>", "exec")
    args = _part(arguments_call(arguments), "<input>", "eval")
    # no timeout: the configuration's hard limit (the child takes the smaller of the two)
    cpu_s = math.ceil(timeout_s + 1) if timeout_s > 0 else 1 << 30
    body = marshal.dumps((code, args, repeat, max_output, cpu_s))
    return HEADER.pack(repeat, max_output, timeout_s) + body


def load(payload: bytes) -> tuple[Any, Any, int, int, int]:
    """`encode`'s tuple back, in the fork-server. Raises ValueError for anything else (the
    bytes come from the worker's `encode`, so that would be a bug, reported as the job's
    error)."""
    try:
        job = marshal.loads(memoryview(payload)[HEADER.size :])
    except (EOFError, ValueError, TypeError) as exc:
        raise ValueError(f"the job does not load: {describe(exc)}") from None
    if type(job) is not tuple or len(job) != 5:
        raise ValueError("the job is not a 5-tuple")
    return job
