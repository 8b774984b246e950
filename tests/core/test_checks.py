from __future__ import annotations

import pytest

from azr.core.checks import check_expression, check_program, parse_arguments


@pytest.mark.parametrize(
    "program",
    [
        "import os\ndef f(x):\n    return x",
        "from os import path\ndef f(x):\n    return x",
        "import os.path\ndef f(x):\n    return x",
        "def f(x):\n    return os.system('id')",
        "def f(x):\n    sys.exit(0)",
        "def f(x):\n    return os.environ['HOME']",
        "def f(x):\n    return open('/etc/passwd').read()",
        "def f(x):\n    return eval(x)",
        "def f(x):\n    exec(x)",
        "def f(x):\n    return __import__('os')",
        "def f(x):\n    return ().__class__.__base__.__subclasses__()",
        "def f(x):\n    return f.__globals__",
        "def f(x):\n    return getattr(x, '__class__')",
        "def f(x):\n    return getattr(x, x)",
        "def f(x):\n    return input()",
        "def f(x):\n    return compile(x, 'a', 'exec')",
        "def f(x):\n    import random\n    return random.random()",
        "def f(x):\n    return collections._sys.modules",
    ],
)
def test_refused(program: str) -> None:
    result = check_program(program)
    assert not result.ok and result.reason and result.kind == "banned"


@pytest.mark.parametrize(
    "program",
    [
        # the official `input(` substring rule rejected helpers like this one
        "def parse_input(s):\n    return s.split()\ndef f(s):\n    return parse_input(s)",
        "def f(input):\n    return input(1) if callable(input) else input",
        "def f(time):\n    return time.real",
        "import math\nfrom collections import Counter\ndef f(xs):\n    return Counter(xs), math.pi",
        "class Node:\n    def __init__(self, v):\n        self.v = v\ndef f(v):\n    return Node(v).v",
        "def f(x):\n    return getattr(x, 'real')",
        "def f(x):\n    if __name__ == '__main__':\n        return 0\n    return x",
    ],
)
def test_allowed(program: str) -> None:
    assert check_program(program).ok, check_program(program).reason


def test_malformed() -> None:
    assert check_program("def f(:\n").kind == "malformed"
    assert check_program("def g(x):\n    return x").reason == "no top-level function named 'f'"
    assert check_program("x = 1\n" * 30_000).kind == "malformed"
    assert check_program("def f(x): return x", banned_modules=["math"]).ok


def test_custom_banned_list_and_dotted_entries() -> None:
    assert not check_program("import math\ndef f(x):\n    return x", banned_modules=["math"]).ok
    assert not check_program("def f(x):\n    return os.path.join(x)", banned_modules=["os.path"]).ok
    assert check_program("import os\ndef f(x):\n    return x", banned_modules=["os.path"]).ok


def test_arguments_multiline_and_injection() -> None:
    call = parse_arguments("1,\n  [2,\n 3]  # a comment")
    assert not isinstance(call, str) and len(call.args) == 2
    assert isinstance(parse_arguments("1), print(2"), str)
    assert isinstance(parse_arguments("1) + (2"), str)
    kw = parse_arguments("a=1, b='x'")
    assert not isinstance(kw, str) and [k.arg for k in kw.keywords] == ["a", "b"]
    assert not check_expression("__import__('os')").ok
    assert check_expression("'os.system', {'a': (1, 2)}").ok
