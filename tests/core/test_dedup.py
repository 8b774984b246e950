from __future__ import annotations

from azr.core.dedup import task_fingerprint

PROGRAM = '''def f(xs, k):
    """Sum the k largest."""
    # sort first
    return sum(sorted(xs)[-k:])
'''


def test_formatting_does_not_matter() -> None:
    plain = "def f(xs,k):\n  return sum( sorted(xs)[-k:] )"
    a = task_fingerprint("deduction", PROGRAM, ["[3, 1, 2], 2"])
    b = task_fingerprint("deduction", plain, ["[3,1,2],2"])
    assert a == b and len(a) == 64


def test_quote_style_of_inputs_does_not_matter() -> None:
    p = "def f(s):\n    return s[::-1]"
    assert task_fingerprint("abduction", p, ["'ab'"]) == task_fingerprint("abduction", p, ['"ab"'])


def test_differences_that_matter() -> None:
    base = task_fingerprint("deduction", PROGRAM, ["[3, 1, 2], 2"])
    assert task_fingerprint("abduction", PROGRAM, ["[3, 1, 2], 2"]) != base
    assert task_fingerprint("deduction", PROGRAM, ["[3, 1, 2], 1"]) != base
    changed = PROGRAM.replace("[-k:]", "[:k]")
    assert task_fingerprint("deduction", changed, ["[3, 1, 2], 2"]) != base
    # Input order matters (induction splits visible/hidden by position).
    p = "def f(a):\n    return a"
    assert task_fingerprint("induction", p, ["1", "2"]) != task_fingerprint(
        "induction", p, ["2", "1"]
    )


def test_unparseable_text_still_fingerprints() -> None:
    a = task_fingerprint("deduction", "def f(:\n   return 1  # x", ["1,,"])
    b = task_fingerprint("deduction", "def f(:\n return 1", ["1,,"])
    assert a == b
    assert a != task_fingerprint("deduction", "def f(:\n return 2", ["1,,"])


def test_odd_inputs_do_not_crash() -> None:
    p = "def f(a):\n    return a"
    odd = task_fingerprint("deduction", p, ["1), (2"])
    assert odd != task_fingerprint("deduction", p, ["1, 2"])
    deep = "(" * 5000 + "1" + ")" * 5000
    assert len(task_fingerprint("deduction", p, [deep])) == 64
    assert len(task_fingerprint("deduction", "x = " + deep, [])) == 64
