from __future__ import annotations

import ast

import pytest

from azr.core.parsing import (
    check_format,
    drop_test_calls,
    extract_answer,
    extract_code_blocks,
    extract_fenced,
    extract_io_value,
    parse_answer,
    parse_proposal,
    rename_entry_to_f,
    split_imports,
)
from azr.core.tasks import IDENTITY_SEED, Task, TaskType

# ---------------------------------------------------------------- envelope / format


def test_check_format() -> None:
    assert check_format(" plan </think>\n <answer>x</answer>")
    assert check_format("<think>plan</think><answer>x</answer> trailing")
    assert check_format("\n<think>\nplan\n</think>\n\n<answer>\nx\n</answer>")
    assert not check_format("plan </think> <answer>x")  # unclosed answer
    assert not check_format("plan <answer>x</answer>")  # no </think>
    assert not check_format("plan </think> prose <answer>x</answer>")  # text between
    assert not check_format("")


def test_extract_answer() -> None:
    assert extract_answer("a <answer>one</answer> b <answer>two</answer> c") == "two"
    assert extract_answer("no tags") == ""
    assert extract_answer("<answer>open end") == "open end"


# ---------------------------------------------------------------- fences


def test_fenced_blocks() -> None:
    text = (
        "```python\ndef f(a):\n    return a\n```\n"
        "```input\n'x', 1\n```\n"
        "```\nprint(1)\n```\n"
        "  ```py\n  def g():\n      pass\n  ```\n"
        "```input 7```\n"
        "```output\nunclosed"
    )
    assert extract_code_blocks(text) == [
        "def f(a):\n    return a",
        "print(1)",
        "def g():\n    pass",
    ]
    assert extract_fenced(text, "INPUT") == ["'x', 1", "7"]
    assert extract_fenced(text, "output") == ["unclosed"]
    assert extract_fenced(text, "message") == []


def test_io_value_fallbacks_in_order() -> None:
    assert extract_io_value("```output\n1\n```\n```output\n2\n```", "output") == "2"
    assert extract_io_value("# Output: [1, 2]\nmore", "output") == "[1, 2]"
    assert extract_io_value("output('a', 3)", "output") == "'a', 3"
    assert extract_io_value("so <output>(1, 2)</output>", "output") == "(1, 2)"
    assert extract_io_value("So the output is [1, 3].", "output") == "[1, 3]"
    # '3.' is itself a literal (3.0 == 3), so it is kept as written.
    assert extract_io_value("the output is 3.", "output") == "3."
    assert extract_io_value("So the output is 'a.'.", "output") == "'a.'"
    assert extract_io_value("  42  ", "output") == "42"
    # The fenced block wins over the earlier fallbacks.
    assert extract_io_value("# Input: 1\n```input\n2\n```", "input") == "2"


# ---------------------------------------------------------------- rename / imports


def test_rename_last_function_and_its_calls() -> None:
    code = (
        "def helper(n):\n    return n * 2\n\n"
        "def solve(n):  # entry\n"
        "    if n == 0:\n        return 0\n"
        "    return helper(n) + solve(n - 1)\n"
    )
    out = rename_entry_to_f(code)
    assert out == code.replace("def solve", "def f").replace("solve(n - 1)", "f(n - 1)")
    assert "# entry" in out


def test_rename_keeps_existing_f_and_refuses_conflicts() -> None:
    assert rename_entry_to_f("def f(a):\n    return a") == "def f(a):\n    return a"
    assert rename_entry_to_f("f = 3\ndef g(a):\n    return a + f") is None
    assert rename_entry_to_f("x = 1") is None
    assert rename_entry_to_f("def g(:") is None


def test_rename_leaves_attributes_strings_and_keywords_alone() -> None:
    code = (
        "import math\n"
        "def calc(x, y=1):\n"
        "    s = 'calc'\n"
        "    return math.calc if False else x.calc + calc(x, y=calc)\n"
    )
    out = rename_entry_to_f(code)
    assert out is not None
    assert "def f(x, y=1)" in out and "'calc'" in out and "x.calc" in out and "math.calc" in out
    assert "f(x, y=f)" in out
    ast.parse(out)


def test_rename_handles_decorators_and_unicode() -> None:
    code = "import functools\n@functools.cache\ndef größe(n):\n    return 'ü' + str(größe)\n"
    out = rename_entry_to_f(code)
    assert out == code.replace("größe", "f")


def test_split_imports() -> None:
    code = (
        "import math\n"
        "from collections import (\n    deque,\n    Counter,\n)\n"
        "import os; X = 1\n"
        "def f(a):\n    import heapq\n    return a\n"
    )
    program, imports = split_imports(code)
    assert imports == ["import math", "from collections import deque, Counter", "import os"]
    assert program == "X = 1\ndef f(a):\n    import heapq\n    return a"
    assert split_imports("def f(:") == ("def f(:", [])


# ---------------------------------------------------------------- proposals


GOOD_PROPOSAL = """ I will write a counter.
</think>
<answer>
```python
from collections import Counter

def top(word):
    counts = Counter(word)
    return max(sorted(counts), key=counts.get)
```
```input
'banana'
```
```output
'a'
```
</answer>"""


def test_parse_deduction_proposal() -> None:
    p = parse_proposal(TaskType.DEDUCTION, GOOD_PROPOSAL)
    assert p.parsed and p.format_ok and p.error is None
    assert p.imports == ["from collections import Counter"]
    assert p.program is not None and p.program.startswith("def f(word):")
    assert p.inputs == ["'banana'"]  # the proposer's output is ignored


def test_parse_proposal_lenient_without_answer_tags() -> None:
    text = "thinking...\n```python\ndef g(a):\n    return a * 2\n```\n# Input: 5\n"
    p = parse_proposal(TaskType.ABDUCTION, text)
    assert not p.format_ok
    assert p.parsed and p.program == "def f(a):\n    return a * 2" and p.inputs == ["5"]


def test_parse_proposal_ignores_draft_code_in_think() -> None:
    text = (
        "```python\ndef draft(x):\n    return 0\n```\n</think><answer>"
        + GOOD_PROPOSAL.split("<answer>")[1]
    )
    assert "Counter" in (parse_proposal(TaskType.DEDUCTION, text).program or "")


def test_parse_proposal_keeps_input_calls() -> None:
    """Helpers whose names contain 'input(' are fine (the official substring rule was a bug)."""
    text = "</think><answer>```python\ndef parse_input(s):\n    return s.split()\ndef f(s):\n    return parse_input(s)\n```\n```input\n'a b'\n```</answer>"
    p = parse_proposal(TaskType.DEDUCTION, text)
    assert p.parsed and "parse_input(s)" in (p.program or "")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("</think><answer>no code</answer>", "no python code block"),
        (
            "</think><answer>```python\nx = 1\n```\n```input\n1\n```</answer>",
            "no top-level function",
        ),
        ("</think><answer>```python\ndef f(:\n```</answer>", "does not parse"),
        ("</think><answer>```python\ndef f(a):\n    return a\n```</answer>", "no ```input"),
    ],
)
def test_parse_proposal_errors(text: str, error: str) -> None:
    p = parse_proposal(TaskType.DEDUCTION, text)
    assert not p.parsed and p.error is not None and error in p.error


def _induction_response(n: int, message: str) -> str:
    inputs = "\n".join(f"```input\n{i}\n```" for i in range(n))
    return f"plan</think>\n<answer>\n{inputs}\n{message}\n</answer>"


def test_parse_induction_proposal() -> None:
    ref = Task(
        TaskType.DEDUCTION, "def f(a):\n    return a", ("1",), ("1",), imports=("import math",)
    )
    p = parse_proposal(
        TaskType.INDUCTION,
        _induction_response(12, "```message\nreturn the input\n```"),
        n_inputs=10,
        reference=ref,
    )
    assert p.parsed and p.format_ok
    assert p.inputs == [str(i) for i in range(2, 12)]  # the LAST ten
    assert p.program == ref.program and p.imports == ["import math"]
    assert p.message == "return the input"
    # Message fallbacks: <message> tags, then a '# Message:' line.
    tagged = parse_proposal(
        TaskType.INDUCTION,
        _induction_response(3, "<message>hint</message>"),
        n_inputs=3,
        reference=ref,
    )
    assert tagged.message == "hint"
    line = parse_proposal(
        TaskType.INDUCTION, _induction_response(3, "# Message: hint 2"), n_inputs=3, reference=ref
    )
    assert line.message == "hint 2"


def test_parse_induction_proposal_errors() -> None:
    few = parse_proposal(
        TaskType.INDUCTION,
        _induction_response(9, "```message\nm\n```"),
        reference=IDENTITY_SEED,
    )
    assert not few.parsed and "9 ```input blocks, need 10" in (few.error or "")
    silent = parse_proposal(
        TaskType.INDUCTION, _induction_response(10, ""), reference=IDENTITY_SEED
    )
    assert not silent.parsed and "no message" in (silent.error or "")
    orphan = parse_proposal(TaskType.INDUCTION, _induction_response(10, "# Message: m"))
    assert orphan.error is not None and "reference" in orphan.error


# ---------------------------------------------------------------- answers


def test_parse_answer_deduction_and_abduction() -> None:
    ded = parse_answer(TaskType.DEDUCTION, "x</think><answer>```output\n[1, 2]\n```</answer>")
    assert (ded.value, ded.format_ok, ded.error) == ("[1, 2]", True, None)
    abd = parse_answer(TaskType.ABDUCTION, "x</think>\n<answer>The input is 'ab', 2</answer>")
    assert (abd.value, abd.format_ok) == ("'ab', 2", True)
    whole = parse_answer(TaskType.DEDUCTION, "x</think><answer> 'plain' </answer>")
    assert whole.value == "'plain'"


def test_parse_answer_bad_format_still_reports_value() -> None:
    ans = parse_answer(TaskType.DEDUCTION, "x</think>\n```output\n3\n```")
    assert not ans.format_ok and ans.value == "3" and "no <answer>" in (ans.error or "")


def test_parse_answer_induction() -> None:
    text = (
        "x</think><answer>```python\ndef f(a):\n    return 0\n```\nbetter:\n"
        "```python\ndef rev(s):\n    return s[::-1]\n```</answer>"
    )
    ans = parse_answer(TaskType.INDUCTION, text)
    assert ans.format_ok and ans.value == "def f(s):\n    return s[::-1]"
    none = parse_answer(TaskType.INDUCTION, "x</think><answer>return s[::-1]</answer>")
    assert not none.format_ok and none.value == ""


def test_rename_refuses_unrenameable_bindings() -> None:
    assert rename_entry_to_f("def g(a):\n    global g\n    return a") is None
    assert (
        rename_entry_to_f(
            "def g(a):\n    try:\n        return a\n    except E as f:\n        return 0"
        )
        is None
    )
    # A class named like nothing in particular is fine; one called f blocks the rename.
    assert rename_entry_to_f("class f:\n    pass\ndef g(a):\n    return a") is None
    ok = rename_entry_to_f(
        "class P:\n    def run(self):\n        return 1\ndef g(a):\n    return P().run()"
    )
    assert ok is not None and "def f(a):" in ok and "def run(self)" in ok


def test_windows_newlines() -> None:
    out = rename_entry_to_f("import os\r\ndef g(a):\r\n    return g(a)\r\n")
    assert out == "import os\ndef f(a):\n    return f(a)\n"
    assert split_imports("import os\r\ndef f(a):\r\n    return a") == (
        "def f(a):\n    return a",
        ["import os"],
    )


def test_parsers_never_raise_on_junk() -> None:
    """Model output is arbitrary: every parser returns a result, never an exception."""
    import random

    pieces = [
        "```",
        "```python\n",
        "```input\n",
        "```output\n",
        "```message\n",
        "<think>",
        "</think>",
        "<answer>",
        "</answer>",
        "def ",
        "f(",
        "g(",
        "):\n",
        "    return ",
        "x",
        "'",
        '"',
        "\n",
        "# Input: ",
        "the output is ",
        "import os\n",
        "class ",
        "@",
        "\r",
        "ü",
        "\\",
        "(",
        "[",
        "lambda",
        ":",
        "global g\n",
        "\t",
        "Assistant:",
        "1",
        ",",
        " ",
    ]
    rng = random.Random(5)
    for _ in range(400):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        for task_type in TaskType:
            parse_proposal(task_type, text, n_inputs=2, reference=IDENTITY_SEED)
            parse_answer(task_type, text)
        renamed = rename_entry_to_f(text)
        if renamed is not None:
            tree = ast.parse(renamed)
            assert any(isinstance(n, ast.FunctionDef) and n.name == "f" for n in tree.body)
        split_imports(text)


def test_drop_test_calls_after_f() -> None:
    code = (
        "CACHE = {}\n"
        "def f(a):\n"
        "    return CACHE.get(a, a)\n"
        "print(f(3))\n"
        "f(4)\n"
        "assert f(1) == 1\n"
        "CACHE.update({1: 2})  # setup f relies on: kept\n"
        "if __name__ == '__main__':\n"
        "    print(f(5))\n"
        "LIMIT = 3\n"
    )
    assert drop_test_calls(code) == (
        "CACHE = {}\n"
        "def f(a):\n"
        "    return CACHE.get(a, a)\n"
        "CACHE.update({1: 2})  # setup f relies on: kept\n"
        "LIMIT = 3\n"
    )
    # Statements before f, and code without f, are left alone.
    assert (
        drop_test_calls("print(1)\ndef f(a):\n    return a") == "print(1)\ndef f(a):\n    return a"
    )
    assert drop_test_calls("def g(a):\n    return a\nprint(g(1))").endswith("print(g(1))")
    p = parse_proposal(
        TaskType.DEDUCTION,
        "</think><answer>```python\ndef g(a):\n    return a + 1\nprint(g(2))\n```\n```input\n2\n```</answer>",
    )
    assert p.program == "def f(a):\n    return a + 1"
