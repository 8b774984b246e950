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
child as source, as every text did before, and is compiled there under its CPU limit.

The child turns code bytes back into code objects with `marshal.loads` before its audit hook is
installed (the hook refuses ``marshal.*`` events); those bytes only ever come from here."""

from __future__ import annotations

import marshal
import struct
from functools import lru_cache

from azr.core.checks import ARGS_CALLEE

# program bytes, argument-list bytes, repeat, max_output, timeout, which parts are compiled
HEADER = struct.Struct("!IIIIdB")
PROGRAM_COMPILED, ARGS_COMPILED = 1, 2
MAX_ERROR_CHARS = 500
# CRUXEval's 800 programs have at most 5 "+"; a fold chain costs its length squared
MAX_PLUS = 32


class CompileFailed(Exception):
    """The text is not a program (or not an argument list); the message is the job's error."""


def describe(exc: BaseException, limit: int = MAX_ERROR_CHARS) -> str:
    """``Class: message``, capped; survives a hostile ``__str__``."""
    try:
        text = f"{type(exc).__name__}: {exc}"
    except BaseException:
        text = type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def arguments_source(text: str) -> str:
    """An argument list as the call of ``ARGS_CALLEE`` the child evaluates (it binds the name to
    a function that hands back ``(args, kwargs)``)."""
    return f"{ARGS_CALLEE}(\n{text}\n)"


@lru_cache(maxsize=64)  # the primary and secondary fork-servers get the same texts
def _compiled(source: str, filename: str, mode: str) -> bytes | str:
    try:
        # dont_inherit: no __future__ flag of this module leaks into programs (plain semantics)
        return marshal.dumps(compile(source, filename, mode, dont_inherit=True, optimize=0))
    except Exception as exc:  # SyntaxError, ValueError (NUL), RecursionError, MemoryError
        return describe(exc)


def _part(source: str, filename: str, mode: str) -> tuple[bytes, bool]:
    if source.count("+") > MAX_PLUS:
        return source.encode("utf-8", "surrogatepass"), False
    got = _compiled(source, filename, mode)
    if isinstance(got, str):
        raise CompileFailed(got)
    return got, True


def encode(program: str, arguments: str, repeat: int, max_output: int, timeout_s: float) -> bytes:
    """The bytes a child reads for one evaluation; raises `CompileFailed` for a text that does
    not compile (without a child: the job's error is the message)."""
    code, program_compiled = _part(program, "<program>", "exec")
    args, args_compiled = _part(arguments_source(arguments), "<input>", "eval")
    flags = (PROGRAM_COMPILED if program_compiled else 0) | (ARGS_COMPILED if args_compiled else 0)
    head = HEADER.pack(len(code), len(args), repeat, max_output, timeout_s, flags)
    return head + code + args
