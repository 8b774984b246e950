"""Static checks on model-written Python: the first of the executor's defence layers.

Nothing here executes model text; everything is decided from the `ast`. The sandbox's runtime
layers stay in force whatever these checks say, so the checks aim at *intent* (a program that
reaches for the OS, the interpreter's internals or I/O is not a reasoning task) and at the
official executor's defects (azr-reference §3 and §10.8):

* banned modules are matched by import (any dotted prefix, so ``os.path`` bans ``import os.path``
  and ``from os import path``) AND by attribute use (``os.system``, ``sys.exit``, ``os.environ``);
* banned builtins are matched as names (``open``, ``eval``, ``exec``, ``__import__`` ...);
* dunder escape hatches (``__subclasses__``, ``__globals__``, frame attributes ...) are refused;
* helper names that merely contain ``input(`` (``parse_input(...)``) are fine — only a call of the
  builtin ``input`` is refused, and only when the program does not bind that name itself.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

MAX_PROGRAM_CHARS = 20_000
MAX_PROGRAM_LINES = 1_000
MAX_EXPRESSION_CHARS = 10_000

# Builtins whose only uses in a puzzle program are I/O, dynamic code or interpreter internals.
BANNED_BUILTINS: frozenset[str] = frozenset(
    {
        "open",
        "exec",
        "eval",
        "compile",
        "__import__",
        "globals",
        "locals",
        "vars",
        "breakpoint",
        "exit",
        "quit",
        "help",
        "memoryview",
        "__builtins__",
        "__loader__",
        "__spec__",
        "__build_class__",
    }
)

# Attribute names that lead from an ordinary object to the interpreter's internals.
BANNED_ATTRIBUTES: frozenset[str] = frozenset(
    {
        "__subclasses__",
        "__globals__",
        "__builtins__",
        "__code__",
        "__closure__",
        "__bases__",
        "__base__",
        "__mro__",
        "__class__",
        "__getattribute__",
        "__reduce__",
        "__reduce_ex__",
        "__loader__",
        "__spec__",
        "__import__",
        "__self__",
        "__func__",
        "__traceback__",
        "__dict__",
        "__init_subclass__",
        "__set_name__",
        "__kwdefaults__",
        "__defaults__",
        "mro",
        "f_globals",
        "f_locals",
        "f_builtins",
        "f_back",
        "f_code",
        "tb_frame",
        "tb_next",
        "gi_frame",
        "gi_code",
        "cr_frame",
        "cr_code",
        "ag_frame",
        "ag_code",
        "co_code",
        # modules that other modules keep as attributes (`collections._sys`, `re._os` ...)
        "os",
        "_os",
        "sys",
        "_sys",
        "builtins",
        "subprocess",
        "ctypes",
        "importlib",
        "socket",
    }
)

# getattr & co. turn a string into an attribute access, so they are only allowed with a constant,
# non-dunder attribute name.
_REFLECTIVE = frozenset({"getattr", "setattr", "delattr", "hasattr"})


@dataclass(frozen=True)
class CheckResult:
    """The outcome of a static check: ok, or the first reason the text was refused."""

    ok: bool
    reason: str | None = None
    # "banned" (a refused module/name/attribute) or "malformed" (syntax, size, shape)
    kind: str | None = None

    @classmethod
    def passed(cls) -> CheckResult:
        return cls(True, None)

    @classmethod
    def failed(cls, reason: str, kind: str = "banned") -> CheckResult:
        return cls(False, reason, kind)


def default_banned_modules() -> tuple[str, ...]:
    """`azr.settings.DEFAULT_BANNED_MODULES`, imported lazily: the sandbox fork-server imports
    this module and must stay small (fork cost grows with the parent's memory)."""
    from azr.settings import DEFAULT_BANNED_MODULES

    return DEFAULT_BANNED_MODULES


def _module_banned(module: str, banned: Iterable[str]) -> str | None:
    """The banned entry that `module` (dotted) falls under, if any (component-wise prefix)."""
    parts = module.split(".")
    for entry in banned:
        entry_parts = entry.split(".")
        if parts[: len(entry_parts)] == entry_parts:
            return entry
    return None


def _dotted(node: ast.expr) -> str | None:
    """`a.b.c` for a pure Name/Attribute chain, else None."""
    names: list[str] = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        names.append(node.id)
        return ".".join(reversed(names))
    return None


def walk_nodes(tree: ast.AST) -> list[ast.AST]:
    """`list(ast.walk(tree))`, the same nodes in the same breadth-first order, without a
    generator per node (ast.walk's cost is most of a validation's worker-side CPU)."""
    out = [tree]
    append, node_type = out.append, ast.AST
    for node in out:  # a list's iterator also yields what is appended while it runs
        for name in node._fields:
            value = getattr(node, name, None)
            if isinstance(value, node_type):
                append(value)
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, node_type):
                        append(item)
    return out


_DEFINITIONS = frozenset({ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef})
_MATCH_CAPTURES = frozenset({ast.MatchAs, ast.MatchStar})


def _binding_pass(nodes: list[Any]) -> tuple[set[str], set[int]]:
    """Every name the text binds itself (parameters, assignment targets, defs, classes, except
    and match captures, imports), and the ids of the Name nodes that are a call's callee. The
    tree comes from `ast.parse`, so exact types are compared: one `is` per branch instead of an
    isinstance per branch and node (this pass and the next were most of a validation's static
    checking)."""
    bound: set[str] = set()
    callees: set[int] = set()
    name_t, call_t, load_t = ast.Name, ast.Call, ast.Load
    for node in nodes:
        t = type(node)
        if t is name_t:
            if type(node.ctx) is not load_t:  # Store or Del
                bound.add(node.id)
        elif t is call_t:
            if type(node.func) is name_t:
                callees.add(id(node.func))
        elif t is ast.arg:
            bound.add(node.arg)
        elif t in _DEFINITIONS:
            bound.add(node.name)
        elif t is ast.alias:
            bound.add((node.asname or node.name).split(".")[0])
        elif (t is ast.ExceptHandler or t in _MATCH_CAPTURES) and node.name is not None:
            bound.add(node.name)
    return bound, callees


def check_tree(tree: ast.AST, banned_modules: Iterable[str] | None = None) -> CheckResult:
    """The name/attribute/import rules on an already parsed tree."""
    banned = tuple(default_banned_modules() if banned_modules is None else banned_modules)
    # walked once, in ast.walk's breadth-first order, so the first reason found is the same
    nodes: list[Any] = walk_nodes(tree)  # exact node types, compared below
    # getattr & co. only as the callee of a call: an alias (`g = getattr`, `[getattr][0]`)
    # would take the attribute name from anywhere
    bound, callees = _binding_pass(nodes)
    name_t, attribute_t, call_t = ast.Name, ast.Attribute, ast.Call
    for node in nodes:
        t = type(node)
        if t is name_t:
            name = node.id
            if name in BANNED_BUILTINS and name not in bound:
                return CheckResult.failed(f"builtin {name!r} is not allowed")
            if name.startswith("__") and name.endswith("__") and name != "__name__":
                return CheckResult.failed(f"name {name!r} is not allowed")
            if name in _REFLECTIVE and name not in bound and id(node) not in callees:
                return CheckResult.failed(f"{name} may only be called directly")
        elif t is attribute_t:
            if node.attr in BANNED_ATTRIBUTES:
                return CheckResult.failed(f"attribute {node.attr!r} is not allowed")
            dotted = _dotted(node)
            if dotted is not None:
                root = dotted.split(".")[0]
                hit = _module_banned(dotted, banned)
                # `time.sleep` is refused unless the program itself binds a variable `time`.
                if hit and root not in bound:
                    return CheckResult.failed(f"banned module use {dotted!r}")
        elif t is call_t:
            if type(node.func) is not name_t:
                continue
            reason = _call_refused(node, bound)
            if reason:
                return CheckResult.failed(reason)
        elif t is ast.Import or t is ast.ImportFrom:
            reason = _import_refused(node, banned)
            if reason:
                return CheckResult.failed(reason)
    return CheckResult.passed()


def _call_refused(node: Any, bound: set[str]) -> str | None:
    """`input()` and getattr & co. with anything but a constant, non-dunder name."""
    name: str = node.func.id
    if name == "input" and name not in bound:
        return "builtin 'input' is not allowed (no stdin)"
    if name in _REFLECTIVE and name not in bound:
        attr = node.args[1] if len(node.args) > 1 else None
        if not (isinstance(attr, ast.Constant) and isinstance(attr.value, str)):
            return f"{name} needs a constant attribute name"
        if attr.value.startswith("__") or attr.value in BANNED_ATTRIBUTES:
            return f"{name} of {attr.value!r} is not allowed"
    return None


def _import_refused(node: ast.Import | ast.ImportFrom, banned: tuple[str, ...]) -> str | None:
    if isinstance(node, ast.Import):
        for alias in node.names:
            hit = _module_banned(alias.name, banned)
            if hit:
                return f"banned module {hit!r} (import {alias.name})"
        return None
    if node.level:
        return "relative imports are not allowed"
    module = node.module or ""
    for alias in node.names:
        hit = _module_banned(module, banned) or _module_banned(f"{module}.{alias.name}", banned)
        if hit:
            return f"banned module {hit!r} (from {module} import {alias.name})"
    return None


def parse_program(source: str) -> ast.Module | str:
    """The module tree, or a one-line syntax error description."""
    try:
        return ast.parse(source, mode="exec")
    except SyntaxError as exc:
        return f"syntax error: {exc.msg} (line {exc.lineno})"
    except (ValueError, RecursionError, MemoryError) as exc:
        # null bytes, absurd nesting: the parser itself refuses
        return f"syntax error: {type(exc).__name__}"


def defines_function(tree: ast.Module, name: str = "f") -> bool:
    return any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name
        for node in tree.body
    )


def check_program(
    source: str,
    *,
    banned_modules: Iterable[str] | None = None,
    max_chars: int = MAX_PROGRAM_CHARS,
    max_lines: int = MAX_PROGRAM_LINES,
    require_f: bool = True,
) -> CheckResult:
    """Static checks on a whole program (proposer snippet with its imports, or a solver's
    induction answer). `require_f`: a top-level `def f` must exist."""
    if len(source) > max_chars:
        return CheckResult.failed(f"program over {max_chars} characters", "malformed")
    if source.count("\n") + 1 > max_lines:
        return CheckResult.failed(f"program over {max_lines} lines", "malformed")
    tree = parse_program(source)
    if isinstance(tree, str):
        return CheckResult.failed(tree, "malformed")
    if require_f and not defines_function(tree):
        return CheckResult.failed("no top-level function named 'f'", "malformed")
    return check_tree(tree, banned_modules)


def check_expression(
    text: str,
    *,
    banned_modules: Iterable[str] | None = None,
    max_chars: int = MAX_EXPRESSION_CHARS,
) -> CheckResult:
    """Static checks on an argument list or output literal written by a model (inputs, answers).
    Multi-line text is fine: it is parsed inside a call's parentheses."""
    if len(text) > max_chars:
        return CheckResult.failed(f"expression over {max_chars} characters", "malformed")
    tree = parse_arguments(text)
    if isinstance(tree, str):
        return CheckResult.failed(tree, "malformed")
    return check_tree(tree, banned_modules)


ARGS_CALLEE = "_azr_args"


def arguments_call(text: str) -> str:
    """Argument text as the source of one call of `ARGS_CALLEE`: how it is parsed here and how
    the sandbox child evaluates it (binding the name to a function that returns its arguments)."""
    return f"{ARGS_CALLEE}(\n{text}\n)"


def parse_arguments(text: str) -> ast.Call | str:
    """Parse AZR argument text (``'abc', 3`` or ``x=[1,\\n 2]``) as the argument list of one call.

    The text goes inside ``_azr_args(...)`` on its own lines, so newlines and trailing comments
    cannot break the surrounding code (official defect §2.6), and anything that is not exactly
    one argument list (``1), evil(2``) is refused here, before any execution."""
    if "\x00" in text:
        return "null byte in input"
    try:
        tree = ast.parse(arguments_call(text), mode="eval")
    except SyntaxError as exc:
        return f"not a valid argument list: {exc.msg}"
    except (ValueError, RecursionError, MemoryError) as exc:
        return f"not a valid argument list: {type(exc).__name__}"
    body = tree.body
    if not (
        isinstance(body, ast.Call)
        and isinstance(body.func, ast.Name)
        and body.func.id == ARGS_CALLEE
    ):
        return "not a single argument list"
    return body
