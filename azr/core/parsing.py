"""Turning model text into proposals and answers.

Everything here is lenient on purpose: the default 135M model rarely closes its tags or fences,
so an unclosed final fence still yields its body and a proposal without ``<answer>`` is still
parsed from the text after ``</think>`` (its ``format_ok`` stays False, so the reward is -1, but a
valid program can still be stored). Nothing here evaluates model text; literals are only ever
``ast``-parsed, never executed.
"""

from __future__ import annotations

import ast
import re
import textwrap
import tokenize
import warnings
from collections import Counter
from collections.abc import Iterator
from io import StringIO

from azr.core.tasks import Answer, Proposal, Role, Task, TaskType

# Labels that mean "a python code block" (an unlabelled fence counts too).
CODE_LABELS = frozenset({"", "python", "py", "python3"})

_FORMAT_RE = re.compile(r"\s*(?:<think>)?.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
# An opening fence: ``` then an optional label, then either a newline or same-line content.
_FENCE_OPEN_RE = re.compile(r"```[ \t]*([A-Za-z][\w+.-]*)?[ \t]*\n?")


def quiet_parse(source: str, mode: str = "exec") -> ast.AST:
    """``ast.parse`` without the Syntax/DeprecationWarnings that model text (bad escapes, ``is``
    with literals) would otherwise print on every call."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return ast.parse(source, mode=mode)
        except (RecursionError, MemoryError) as exc:
            raise SyntaxError(f"too deeply nested to parse: {type(exc).__name__}") from exc


def quiet_parse_module(source: str) -> ast.Module:
    tree = quiet_parse(source)
    assert isinstance(tree, ast.Module)
    return tree


# ---------------------------------------------------------------- envelope and format


def check_format(response: str) -> bool:
    """The think/answer format: ``<think>`` ... ``</think>`` ws ``<answer>`` ... ``</answer>``.

    Anchored at the start of the response. The prompt pre-opens ``<think>``, so a response that
    begins inside the think section (no opening tag) counts as having it. Trailing text is allowed.
    """
    return _FORMAT_RE.match(response) is not None


def extract_answer(response: str) -> str:
    """The text after the last ``<answer>`` and before the next ``</answer>``; "" without one.

    An ``<answer>`` that is never closed yields everything after it (the format check fails for
    such a response anyway, so this only matters for lenient parsing).
    """
    start = response.rfind("<answer>")
    if start == -1:
        return ""
    body = response[start + len("<answer>") :]
    end = body.find("</answer>")
    return body if end == -1 else body[:end]


def answer_region(response: str) -> tuple[str, bool]:
    """The text to parse and whether it came from a real ``<answer>`` tag.

    Falls back to the text after the last ``</think>`` (or the whole response) when the model
    wrote no ``<answer>`` at all.
    """
    if "<answer>" in response:
        return extract_answer(response), True
    think_end = response.rfind("</think>")
    return (response[think_end + len("</think>") :] if think_end != -1 else response), False


# ---------------------------------------------------------------- answers the system closes


def required_blocks(task_type: TaskType, role: Role, n_inputs: int = 10) -> dict[str, int]:
    """The fenced blocks (by kind, with counts) that make a role's answer complete."""
    task_type, role = TaskType(task_type), Role(role)
    if role is Role.PROPOSE:
        if task_type is TaskType.INDUCTION:
            return {"input": n_inputs, "message": 1}
        return {"python": 1, "input": 1}
    return {TaskType.DEDUCTION: {"output": 1}, TaskType.ABDUCTION: {"input": 1}}.get(
        task_type, {"python": 1}
    )


def answer_complete_at(
    task_type: TaskType, role: Role, response: str, *, n_inputs: int = 10
) -> int | None:
    """Where an opened but unclosed answer first holds every block its role needs: the index just
    past the closing fence that completes it.

    None when the response never opened ``<answer>``, already closed it, or still lacks a block.
    Used to end a generation once the answer is complete (`close_answer`): a cold-start model
    writes the blocks and then rambles to the length limit instead of writing ``</answer>``.
    """
    start = response.rfind("<answer>")
    if start == -1 or "</answer>" in response[start:]:
        return None
    need = required_blocks(task_type, role, n_inputs)
    seen: Counter[str] = Counter()
    for label, body, end in iter_fenced_spans(response, start + len("<answer>")):
        if end is None:
            return None
        if body.strip():
            seen["python" if label in CODE_LABELS else label] += 1
        if all(seen[kind] >= count for kind, count in need.items()):
            return end
    return None


def close_answer(response: str, at: int) -> str:
    """The response cut just after its last needed block, with ``</answer>`` written for it."""
    return response[:at] + "\n</answer>"


# ---------------------------------------------------------------- fenced blocks


def iter_fenced(text: str) -> Iterator[tuple[str, str]]:
    """Yield ``(label, body)`` for every fenced block, in order; labels are lower-cased.

    An unclosed final fence yields the rest of the text as its body.
    """
    for label, body, _end in iter_fenced_spans(text):
        yield label, body


def iter_fenced_spans(text: str, start: int = 0) -> Iterator[tuple[str, str, int | None]]:
    """Like `iter_fenced` from index ``start``, with the index just past each closing fence
    (None for an unclosed final fence)."""
    pos = start
    while True:
        opening = _FENCE_OPEN_RE.search(text, pos)
        if opening is None:
            return
        label = (opening.group(1) or "").lower()
        close = text.find("```", opening.end())
        body = text[opening.end() :] if close == -1 else text[opening.end() : close]
        yield label, _clean_body(body), None if close == -1 else close + 3
        if close == -1:
            return
        pos = close + 3


def _clean_body(body: str) -> str:
    # Blocks inside indented lists come indented; strip that, keep the code's own indentation.
    return textwrap.dedent(body.strip("\n")).rstrip()


def extract_fenced(text: str, label: str) -> list[str]:
    """Bodies of the fenced blocks labelled exactly ``label`` (case-insensitive), in order."""
    wanted = label.lower()
    return [body for lab, body in iter_fenced(text) if lab == wanted]


def extract_code_blocks(text: str) -> list[str]:
    """Bodies of the python blocks (labels ``python``/``py``/``python3`` or none), in order."""
    return [body for lab, body in iter_fenced(text) if lab in CODE_LABELS]


# ---------------------------------------------------------------- programs


def _normalise_newlines(code: str) -> str:
    # Python's tokenizer treats \r\n and \r as line ends; make them \n so that our line
    # arithmetic (split on \n only, unlike str.splitlines) agrees with ast's line numbers.
    return code.replace("\r\n", "\n").replace("\r", "\n")


def _source_lines(source: str) -> list[str]:
    return source.split("\n") if source else [""]


def _line_offsets(source: str) -> list[int]:
    offsets = [0]
    for line in _source_lines(source):
        offsets.append(offsets[-1] + len(line) + 1)
    return offsets


def _char_index(source_lines: list[str], offsets: list[int], lineno: int, byte_col: int) -> int:
    # ast columns are UTF-8 byte offsets; convert to a str index into the whole source.
    line = source_lines[lineno - 1]
    return offsets[lineno - 1] + len(line.encode("utf-8")[:byte_col].decode("utf-8"))


def _top_level_functions(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def _names(tree: ast.AST) -> tuple[set[str], set[str]]:
    """Identifiers of the program (not attributes, not keywords), split in two: those our
    renaming can edit by position (names, parameters, function definitions) and those it cannot
    (classes, import aliases, global/nonlocal, except ... as, match captures)."""
    editable: set[str] = set()
    fixed: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            editable.add(node.id)
        elif isinstance(node, ast.arg):
            editable.add(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            editable.add(node.name)
        elif isinstance(node, ast.ClassDef | ast.ExceptHandler | ast.MatchAs | ast.MatchStar):
            if node.name:
                fixed.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            fixed.add(node.rest)
        elif isinstance(node, ast.alias):
            fixed.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.Global | ast.Nonlocal):
            fixed.update(node.names)
    return editable, fixed


def rename_entry_to_f(code: str) -> str | None:
    """Make sure the program's entry function is called ``f``; None when that is impossible.

    Rule: if a top-level function ``f`` exists the code is returned unchanged. Otherwise the
    LAST top-level function is the entry point (helpers usually come first; this is the
    reference's ``any_last`` choice) and it is renamed everywhere it is referenced — its
    definition, recursive calls, calls from helpers — by editing exactly those tokens, so
    comments and layout survive. Returns None when the code does not parse, has no top-level
    function, or already uses the name ``f`` for something else (renaming would change meaning),
    or binds the function's name in a way we do not rename (``global``, ``except ... as``, ...).
    """
    code = _normalise_newlines(code)
    try:
        tree = quiet_parse_module(code)
    except (SyntaxError, ValueError):
        return None
    functions = _top_level_functions(tree)
    if not functions:
        return None
    if any(fn.name == "f" for fn in functions):
        return code
    editable, fixed = _names(tree)
    old = functions[-1].name
    if "f" in editable or "f" in fixed or old in fixed:
        return None

    lines = _source_lines(code)
    offsets = _line_offsets(code)
    starts: list[int] = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Name) and node.id == old) or (
            isinstance(node, ast.arg) and node.arg == old
        ):
            starts.append(_char_index(lines, offsets, node.lineno, node.col_offset))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == old:
            def_pos = _def_name_position(code, node)
            if def_pos is None:
                return None
            starts.append(def_pos)
    out = code
    for start in sorted(set(starts), reverse=True):
        if out[start : start + len(old)] != old:
            return None  # positions did not line up: refuse rather than corrupt the code
        out = out[:start] + "f" + out[start + len(old) :]
    return out


def _def_name_position(code: str, node: ast.FunctionDef | ast.AsyncFunctionDef) -> int | None:
    """Char index of the name in ``def name(`` for ``node`` (ast gives no position for it)."""
    offsets = _line_offsets(code)
    first_line = node.decorator_list[-1].end_lineno if node.decorator_list else node.lineno
    assert first_line is not None
    try:
        tokens = list(tokenize.generate_tokens(StringIO(code).readline))
    except (tokenize.TokenError, SyntaxError):
        return None
    seen_def = False
    for tok in tokens:
        if tok.start[0] < first_line:
            continue
        if tok.type == tokenize.NAME and tok.string == "def":
            seen_def = True
        elif seen_def and tok.type == tokenize.NAME and tok.string == node.name:
            row, col = tok.start  # tokenize columns are str offsets already
            return offsets[row - 1] + col
    return None


def _is_test_statement(node: ast.stmt) -> bool:
    """A top-level statement that only exercises ``f``: ``print(...)``, a bare ``f(...)`` call,
    an ``assert`` that calls ``f``, or an ``if __name__ == "__main__":`` block."""
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        func = node.value.func
        return isinstance(func, ast.Name) and func.id in {"print", "f"}
    if isinstance(node, ast.Assert):
        return any(
            isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "f"
            for n in ast.walk(node)
        )
    if isinstance(node, ast.If):
        return any(isinstance(n, ast.Name) and n.id == "__name__" for n in ast.walk(node.test))
    return False


def drop_test_calls(code: str) -> str:
    """Remove the test statements models like to add after the definition of ``f`` (see
    `_is_test_statement`); everything else, comments included, stays. Unparseable code and code
    without a top-level ``f`` are returned unchanged."""
    code = _normalise_newlines(code)
    try:
        tree = quiet_parse_module(code)
    except (SyntaxError, ValueError):
        return code
    entry = [i for i, n in enumerate(tree.body) if isinstance(n, ast.FunctionDef) and n.name == "f"]
    if not entry:
        return code
    lines = _source_lines(code)
    drop: set[int] = set()
    for node in tree.body[entry[-1] + 1 :]:
        if _is_test_statement(node):
            assert node.end_lineno is not None
            shares_line = any(
                other is not node
                and other.lineno <= node.end_lineno
                and (other.end_lineno or other.lineno) >= node.lineno
                for other in tree.body
            )
            if shares_line:  # "x = 1; print(x)": leave such lines alone
                continue
            drop.update(range(node.lineno - 1, node.end_lineno))
    if not drop:
        return code
    kept = [line for i, line in enumerate(lines) if i not in drop]
    return "\n".join(kept).rstrip() + ("\n" if code.endswith("\n") else "")


def split_imports(code: str) -> tuple[str, list[str]]:
    """Split off the top-level import statements: ``(program without them, import lines)``.

    Imports inside functions stay where they are. Code that does not parse is returned whole
    with no imports (the executor will reject it with a proper syntax error).
    """
    code = _normalise_newlines(code)
    try:
        tree = quiet_parse_module(code)
    except (SyntaxError, ValueError):
        return code, []
    lines = _source_lines(code)
    offsets = _line_offsets(code)
    imports: list[str] = []
    cuts: list[tuple[int, int]] = []
    for node in tree.body:
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        assert node.end_lineno is not None and node.end_col_offset is not None
        start = _char_index(lines, offsets, node.lineno, node.col_offset)
        end = _char_index(lines, offsets, node.end_lineno, node.end_col_offset)
        segment = code[start:end]
        # A parenthesised multi-line import becomes one line so it can be prepended verbatim.
        imports.append(segment if "\n" not in segment else ast.unparse(node))
        # Remove the statement plus a following ';' or the rest of its line when it is alone.
        line_start = offsets[node.lineno - 1]
        line_end = offsets[node.end_lineno]
        before = code[line_start:start]
        after = code[end:line_end]
        if not before.strip() and not after.strip(" \t;\r\n"):
            cuts.append((line_start, line_end))
        else:
            tail = len(after) - len(after.lstrip(" \t;"))
            cuts.append((start, end + tail))
    program = code
    for start, end in sorted(cuts, reverse=True):
        program = program[:start] + program[end:]
    return program.strip("\n"), imports


# ---------------------------------------------------------------- proposals


_INPUT_LINE_RE = re.compile(r"^[ \t]*#\s*Input\s*:[ \t]*(.+)$", re.MULTILINE | re.IGNORECASE)
_MESSAGE_TAG_RE = re.compile(r"<message>(.*?)</message>", re.DOTALL | re.IGNORECASE)
_MESSAGE_LINE_RE = re.compile(r"^[ \t]*#\s*Message\s*:[ \t]*(.+)$", re.MULTILINE | re.IGNORECASE)


def parse_proposal(
    task_type: TaskType,
    response: str,
    *,
    n_inputs: int = 10,
    reference: Task | None = None,
) -> Proposal:
    """Parse a proposer's response (the generation, starting inside the pre-opened think).

    Deduction/abduction: the first python block (entry renamed to ``f``, test calls after it
    dropped, top-level imports split off) and the first ```input block, else a ``# Input:`` line. Induction: the reference's
    program and imports, the LAST ``n_inputs`` ```input blocks (fewer is an error), and the
    message from a ```message block, else ``<message>`` tags, else a ``# Message:`` line.
    """
    task_type = TaskType(task_type)
    proposal = Proposal(task_type=task_type, format_ok=check_format(response))
    content, tagged = answer_region(response)
    if task_type is TaskType.INDUCTION:
        return _parse_induction(proposal, content, n_inputs, reference)

    blocks = extract_code_blocks(content)
    if not blocks:
        proposal.error = "no python code block" + ("" if tagged else " (and no <answer> tag)")
        return proposal
    renamed = rename_entry_to_f(blocks[0])
    if renamed is None:
        proposal.error = why_no_entry(blocks[0])
        return proposal
    program, imports = split_imports(drop_test_calls(renamed))
    proposal.program, proposal.imports = program, imports
    given = extract_fenced(content, "input")
    if given and given[0].strip():
        proposal.inputs = [given[0].strip()]
    else:
        line = _INPUT_LINE_RE.search(content)
        if line is None:
            proposal.error = "no ```input block or '# Input:' line"
            return proposal
        proposal.inputs = [line.group(1).strip()]
    return proposal


def why_no_entry(code: str) -> str:
    """Why ``code`` has no usable entry function ``f``."""
    try:
        tree = quiet_parse_module(code)
    except SyntaxError as exc:
        return f"python block does not parse: {exc.msg} (line {exc.lineno})"
    except ValueError as exc:
        return f"python block does not parse: {exc}"
    if not _top_level_functions(tree):
        return "python block defines no top-level function"
    return "cannot rename the entry function to f: the name f is already used otherwise"


def _parse_induction(
    proposal: Proposal, content: str, n_inputs: int, reference: Task | None
) -> Proposal:
    if reference is None:
        proposal.error = "induction proposal parsed without its reference program"
        return proposal
    proposal.program = reference.program
    proposal.imports = list(reference.imports)
    inputs = [block.strip() for block in extract_fenced(content, "input") if block.strip()]
    if len(inputs) < n_inputs:
        proposal.error = f"{len(inputs)} ```input blocks, need {n_inputs}"
        return proposal
    proposal.inputs = inputs[-n_inputs:]
    message = _find_message(content)
    if not message:
        proposal.error = "no message (```message block, <message> tags or '# Message:' line)"
        return proposal
    proposal.message = message
    return proposal


def _find_message(content: str) -> str | None:
    blocks = [b.strip() for b in extract_fenced(content, "message") if b.strip()]
    if blocks:
        return blocks[0]
    tagged = _MESSAGE_TAG_RE.search(content)
    if tagged and tagged.group(1).strip():
        return tagged.group(1).strip()
    line = _MESSAGE_LINE_RE.search(content)
    if line:
        return line.group(1).strip()
    return None


# ---------------------------------------------------------------- answers


def _fallback_patterns(word: str) -> list[re.Pattern[str]]:
    """The reference's fallbacks after the fenced block, in order (azr-reference §2.5)."""
    return [
        re.compile(rf"^[ \t]*#\s*{word}\s*:[ \t]*(.+)$", re.MULTILINE | re.IGNORECASE),
        re.compile(rf"^[ \t]*{word}\((.*)\)[ \t]*$", re.MULTILINE),
        re.compile(rf"<{word}>(.*?)</{word}>", re.DOTALL | re.IGNORECASE),
        re.compile(rf"\bthe {word} is\s*:?\s*(.+)", re.IGNORECASE),
    ]


def _strip_sentence_dot(value: str) -> str:
    """'the output is 3.' -> '3' — drop one trailing period when that makes it parse."""
    if value.endswith(".") and not _parses(value) and _parses(value[:-1]):
        return value[:-1].rstrip()
    return value


def _parses(expr: str) -> bool:
    try:
        quiet_parse(f"({expr})", mode="eval")
    except (SyntaxError, ValueError):
        return False
    return True


def extract_io_value(content: str, word: str) -> str:
    """The last ```{word} block's body, else the §2.5 fallbacks in order, else ``content``."""
    blocks = [b for b in extract_fenced(content, word) if b.strip()]
    if blocks:
        return blocks[-1].strip()
    for pattern in _fallback_patterns(word):
        found = pattern.findall(content)
        if found:
            return _strip_sentence_dot(str(found[-1]).strip())
    return content.strip()


def parse_answer(task_type: TaskType, response: str) -> Answer:
    """Parse a solver's response into the value the executor should check.

    Deduction: an output literal; abduction: an input (argument list); induction: the last
    python block, entry renamed to ``f``. ``format_ok`` is the think/answer check (and, for
    induction, a code block being present). Without ``<answer>`` the text after ``</think>`` is
    parsed anyway so that callers can still log it; its format stays bad.
    """
    task_type = TaskType(task_type)
    format_ok = check_format(response)
    content, tagged = answer_region(response)
    note = None if tagged else "no <answer> tag; parsed the text after </think>"
    if task_type is TaskType.INDUCTION:
        blocks = extract_code_blocks(content)
        if not blocks:
            return Answer(task_type, "", False, "no python code block in the answer")
        renamed = rename_entry_to_f(blocks[-1])
        if renamed is None:
            # Keep the raw code: the executor will report that f is missing or does not parse.
            return Answer(task_type, blocks[-1], format_ok, why_no_entry(blocks[-1]))
        return Answer(task_type, drop_test_calls(renamed).strip("\n"), format_ok, note)
    word = "output" if task_type is TaskType.DEDUCTION else "input"
    value = extract_io_value(content, word)
    if not value:
        return Answer(task_type, "", format_ok, note or f"empty {word}")
    return Answer(task_type, value, format_ok, note)
