"""Fingerprints that identify a task up to formatting (for de-duplicating the buffers).

Two proposals that differ only in comments, docstrings, blank lines, spacing or quote style get
the same fingerprint. The AST dump depends on the Python version, so fingerprints are stable
within one deployment, not across interpreter upgrades.
"""

from __future__ import annotations

import ast
import hashlib
import json
from collections.abc import Sequence

from azr.core.parsing import quiet_parse
from azr.core.tasks import TaskType


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    return tree


def normalize_program(program: str) -> str:
    """AST dump without comments/docstrings; whitespace-collapsed text if it does not parse."""
    try:
        tree = quiet_parse(program)
    except (SyntaxError, ValueError):
        lines = (line.split("#", 1)[0].strip() for line in program.splitlines())
        return "\n".join(" ".join(line.split()) for line in lines if line)
    return ast.dump(_strip_docstrings(tree), annotate_fields=False)


def normalize_input(text: str) -> str:
    """The argument list's AST dump (so ``'a',1`` == ``"a", 1``); else collapsed text."""
    try:
        parsed = quiet_parse(f"f({text})", mode="eval")
    except (SyntaxError, ValueError):
        return " ".join(text.split())
    call = parsed.body if isinstance(parsed, ast.Expression) else None
    if not isinstance(call, ast.Call):  # e.g. "1), (2" closes the call early
        return " ".join(text.split())
    return "|".join(ast.dump(part, annotate_fields=False) for part in (*call.args, *call.keywords))


def task_fingerprint(task_type: TaskType | str, program: str, inputs: Sequence[str]) -> str:
    """sha256 hex of (task type, normalised program, normalised inputs in order)."""
    payload = json.dumps(
        [
            TaskType(task_type).value,
            normalize_program(program),
            [normalize_input(i) for i in inputs],
        ],
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def program_key(program: str) -> str:
    """sha256 hex of the normalised program alone, whatever the task type: the unit the
    held-out set is kept apart by (a held-out program never appears in a training buffer)."""
    return hashlib.sha256(normalize_program(program).encode("utf-8")).hexdigest()
