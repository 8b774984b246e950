"""Programs and argument lists are compiled on the trusted side (`child_job`), except where that
could be costly or change what a program returns; the child then gets source, as before."""

from __future__ import annotations
import __future__

import marshal
from types import CodeType

import pytest

from azr.core.checks import ARGS_CALLEE
from services.executor import child_job
from services.executor.engine import Engine

SET_PROGRAM = "def f():\n    return list({9, 1, 17, 25})"  # colliding ints: layout matters


def _parts(program: str, arguments: str) -> tuple[object, object]:
    payload = child_job.encode(program, arguments, 2, 100, 3.0)
    repeat, max_output, timeout_s = child_job.HEADER.unpack_from(payload)
    assert (repeat, max_output, timeout_s) == (2, 100, 3.0)
    code, args, repeat2, cap, cpu_s = marshal.loads(payload[child_job.HEADER.size :])
    assert (repeat2, cap) == (2, 100) and cpu_s >= 4
    return code, args


def test_ordinary_texts_reach_the_child_compiled() -> None:
    code, args = _parts("def f(a, b):\n    return a + b", "3, b=4")
    assert isinstance(code, CodeType) and isinstance(args, CodeType)
    namespace: dict[str, object] = {}
    exec(code, namespace)
    namespace[ARGS_CALLEE] = lambda *a, **k: (a, k)
    assert eval(args, namespace) == ((3,), {"b": 4})


@pytest.mark.parametrize(
    ("program", "arguments"),
    [
        (SET_PROGRAM, "1"),  # a frozenset constant in the program
        ("def f(s):\n    return list(s)", "{9, 1, 17, 25}"),  # ... and in the arguments
        ("def f():\n    return " + " + ".join(["'ab' * 100"] * 40), "1"),  # a fold chain
    ],
    ids=["set-in-program", "set-in-arguments", "plus-chain"],
)
def test_costly_or_order_sensitive_texts_go_as_source(program: str, arguments: str) -> None:
    assert str in {type(part) for part in _parts(program, arguments)}


def test_a_text_that_does_not_compile_is_refused_without_a_child() -> None:
    with pytest.raises(child_job.CompileFailed, match="SyntaxError"):
        child_job.encode("def f(:\n    return 1", "1", 1, 100, 3.0)
    with pytest.raises(child_job.CompileFailed):
        child_job.encode("def f(x):\n    return x", "1,,", 1, 100, 3.0)


def test_set_displays_keep_source_order(engine: Engine) -> None:
    namespace: dict[str, object] = {}
    exec(compile(SET_PROGRAM, "<test>", "exec"), namespace)
    expected = repr(namespace["f"]())  # type: ignore[operator]
    out = engine.run([{"program": SET_PROGRAM, "input": ""}])[0]
    assert out["status"] == "ok" and out["output"] == expected


def test_a_slow_constant_fold_runs_out_of_the_childs_time_not_the_workers(engine: Engine) -> None:
    # compiling this folds ever longer strings (tens of seconds, ~9 MB): it must reach the child
    # as source and hit the child's limits there, not stall the worker and then run (whose
    # result would be output_limit)
    program = "def f():\n    return " + "+".join(["'a'*4096"] * 2200)
    out = engine.run([{"program": program, "input": "", "timeout_s": 1.0}])[0]
    assert out["status"] in {"timeout", "memory"}, out


def test_syntax_errors_are_the_items_error(engine: Engine) -> None:
    out = engine.run(
        [
            {"program": "def f(:\n    return 1", "input": ""},
            {"program": "def f():\n    return 7", "input": ""},
        ]
    )
    assert out[0]["status"] == "error" and out[0]["error"].startswith("SyntaxError")
    assert out[1] == {**out[1], "status": "ok", "output": "7"}


def test_a_large_job_arrives_whole(engine: Engine) -> None:
    text = "ab" * 45_000  # a 90 kB argument, loaded by the fork-server before the fork
    program = "def f(s):\n    return [len(s), s[-3:]]"
    out = engine.run([{"program": program, "input": repr(text)}])[0]
    namespace: dict[str, object] = {}
    exec(compile(program, "<test>", "exec"), namespace)
    assert out["status"] == "ok" and out["output"] == repr(namespace["f"](text))  # type: ignore[operator]


@pytest.mark.parametrize("pluses", [0, child_job.MAX_PLUS + 1], ids=["compiled", "source"])
def test_annotations_are_never_evaluated(engine: Engine, pluses: int) -> None:
    # `-> NoneType` names nothing: proposals write it, and it has never made one invalid here
    program = "def f(x: Undefined) -> NoneType:\n    return [x" + " + 1" * pluses + "]"
    namespace: dict[str, object] = {}
    lazy = __future__.annotations.compiler_flag
    exec(compile(program, "<test>", "exec", lazy, dont_inherit=True), namespace)
    out = engine.run([{"program": program, "input": "2"}])[0]
    assert out["status"] == "ok" and out["output"] == repr(namespace["f"](2))  # type: ignore[operator]


def test_load_gives_back_what_encode_wrote_and_refuses_anything_else() -> None:
    payload = child_job.encode("def f(a):\n    return a", "1", 2, 100, 3.0)
    code, args, repeat, cap, cpu_s = child_job.load(payload)
    assert isinstance(code, CodeType) and isinstance(args, CodeType)
    assert (repeat, cap, cpu_s) == (2, 100, 4)
    header = child_job.HEADER.pack(1, 1, 1.0)
    for bad in (payload[:-3], header + marshal.dumps([1, 2]), header + b"\xff\x00", b""):
        with pytest.raises(ValueError):
            child_job.load(bad)


def test_printing_is_counted_per_child_and_an_overflow_sticks(engine: Engine) -> None:
    # every child inherits the fork-server's sink with a count of its own: 900 characters in
    # each of three children in a row stay under the 2000 cap; a program that catches the
    # overflow and returns normally is still over it
    prints = {"program": "def f():\n    print('y' * 900)\n    return 1", "input": ""}
    caught = (
        "def f():\n    try:\n        print('y' * 5000)\n    except BaseException:\n"
        "        pass\n    return 1"
    )
    results = engine.run([prints, prints, prints, {"program": caught, "input": ""}])
    assert [r["status"] for r in results] == ["ok", "ok", "ok", "output_limit"], results
