from __future__ import annotations

import pytest

from azr.core import verification as V
from azr.core.tasks import TaskType


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        ("1", "1.0", True),
        ("True", "1", True),
        ("{1, 2, 3}", "{3, 2, 1}", True),
        ("{'a': 1, 'b': 2}", "{'b': 2, 'a': 1}", True),
        ("[1, 2]", "(1, 2)", False),
        ("0.1 + 0.2", "0.3", False),  # arithmetic is not a literal
        ("0.30000000000000004", "0.3", False),
        ("frozenset({1})", "frozenset({1})", True),
        ("set()", "set()", True),
        ("-1-2j", "(-1-2j)", True),
        ("nan", "nan", False),
        ("<X object at 0x1>", "<X object at 0x1>", False),
        ("'a\\nb'", '"a\\nb"', True),
    ],
)
def test_literal_equality(a: str, b: str, equal: bool) -> None:
    assert V.literal_equal(a, b) is equal


def test_round_trip_requires_equal_value() -> None:
    assert V.round_trips(repr([1.5, (2, "x")]), [1.5, (2, "x")])
    assert not V.round_trips("nan", float("nan"))
    assert not V.round_trips("[1]", (1,))


def _job(status: str = "ok", calls: list[dict[str, object]] | None = None) -> V.JobResult:
    return V.JobResult.from_dict({"status": status, "calls": calls or []})


def test_validation_uses_explicit_status_not_message_text() -> None:
    ok = {"status": "ok", "output": "1", "deterministic": True, "literal": True}
    # an exception whose name lacks "Error" was VALID in the official executor
    bad = {"status": "error", "error": "StopIteration: "}
    assert V.interpret_validation(_job(calls=[ok]), _job(calls=[ok]), 1).valid
    out = V.interpret_validation(_job(calls=[bad]), None, 1)
    assert not out.valid and out.status == "error"
    timeout = V.interpret_validation(_job("timeout"), None, 1)
    assert not timeout.valid and timeout.status == "timeout"


def test_validation_determinism_and_literal_rules() -> None:
    base = {"status": "ok", "output": "1", "deterministic": True, "literal": True}
    assert not V.interpret_validation(_job(calls=[{**base, "deterministic": False}]), None, 1).valid
    assert not V.interpret_validation(_job(calls=[{**base, "literal": False}]), None, 1).valid
    other = {**base, "output": "2"}
    out = V.interpret_validation(_job(calls=[base]), _job(calls=[other]), 1)
    assert not out.valid and "hash seed" in (out.reason or "")
    assert not V.interpret_validation(_job(calls=[{"status": "output_limit"}]), None, 1).valid


def test_precheck_refuses_banned_and_empty() -> None:
    assert V.validation_precheck(TaskType.DEDUCTION, "def f(x): return x", [], ()) is not None
    refused = V.validation_precheck(
        TaskType.DEDUCTION, "import os\ndef f(x): return x", ["1"], ["os"]
    )
    assert refused is not None and refused.status == "forbidden"
    assert (
        V.validation_precheck(TaskType.DEDUCTION, "def f(x): return x", ["1,\n2"], ["os"]) is None
    )


def test_verification_plans() -> None:
    item = V.VerifyItem(TaskType.DEDUCTION, "", answer="[1, 2]", output="[1, 2]")
    assert V.plan_verification(item, (), timeout_s=1, max_output=10).verdict.correct  # type: ignore[union-attr]
    item = V.VerifyItem(TaskType.DEDUCTION, "", answer="(1, 2)", output="[1, 2]")
    plan = V.plan_verification(item, (), timeout_s=1, max_output=10)
    assert plan.verdict is None and plan.compare == [("[1, 2]", "(1, 2)")]
    abd = V.VerifyItem(TaskType.ABDUCTION, "def f(a, b): return a", answer="1,\n2", output="1")
    plan = V.plan_verification(abd, (), timeout_s=1, max_output=10)
    assert plan.call is not None and plan.call["args"] == ["1,\n2"]
    ind = V.VerifyItem(
        TaskType.INDUCTION,
        "import math\ndef f(x): return x",
        answer="def f(x): return x",
        hidden=[("1", "1"), ("2", "2")],
    )
    plan = V.plan_verification(ind, (), timeout_s=1, max_output=10)
    assert plan.call is not None and plan.call["program"].startswith("import math")
    done = V.after_call(
        ind, _job(calls=[{"status": "ok", "output": "1"}, {"status": "ok", "output": "2.0"}])
    )
    assert done.compare == [("2", "2.0")]
    failed = V.after_call(
        ind, _job(calls=[{"status": "ok", "output": "1"}, {"status": "error", "error": "x"}])
    )
    assert failed.verdict is not None and not failed.verdict.correct
    bad = V.VerifyItem(
        TaskType.INDUCTION, "", answer="import os\ndef f(x): return x", hidden=[("1", "1")]
    )
    verdict = V.plan_verification(bad, ["os"], timeout_s=1, max_output=10).verdict
    assert verdict is not None and verdict.status == "forbidden"


def test_evaluations_are_judged_on_the_trusted_side() -> None:
    raws: list[dict[str, object]] = [
        {"status": "ok", "outputs": ["{'a', 'b'}", "{'b', 'a'}"]},  # equal values
        {"status": "ok", "outputs": ["1", "2"]},  # two calls disagree
        {"status": "ok", "outputs": ["<X object at 0x1>", "<X object at 0x1>"]},
        {"status": "pwned", "outputs": ["1", "1"]},  # unknown status: this item's error
        {"status": "ok", "outputs": ["1"]},  # wrong number of outputs
        {"status": "ok", "outputs": [1, 1]},  # not texts
    ]
    calls = V.JobResult.from_evaluations(raws, repeat=2).calls
    assert calls[0].status == "ok" and calls[0].deterministic and calls[0].literal
    assert calls[1].deterministic is False
    assert calls[2].literal is False
    assert [c.status for c in calls[3:]] == ["error"] * 3


def test_literals_are_capped() -> None:
    big = "[" + ", ".join(["1"] * 30_000) + "]"
    assert not V.is_literal(big)  # over the node cap
    assert not V.literal_equal("[1]", "[1]", max_chars=2)
    assert V.literal_equal("[1]", "[1.0]", max_chars=5)
    assert V.same_value("{'b', 'a'}", "{'a', 'b'}")
    assert V.compare_values([("(1, 2)", "(1.0, 2)"), ("[1]", "(1,)")], 100) == [True, False]
