"""Reward-hacking signals over hand-built proposal sets."""

from __future__ import annotations

import pytest

from azr.loop.signals import ProposalRecord, Thresholds, compute_signals, flags

IDENTITY = "def f(x):\n    return x"
CONSTANT = "def f(x):\n    return 42"
REAL = "def f(xs):\n    total = 0\n    for x in xs:\n        total += x * x\n    return total"


def rec(
    program: str,
    inputs: tuple[str, ...] = ("[1, 2]",),
    outputs: tuple[str, ...] = ("5",),
    **kw: object,
) -> ProposalRecord:
    return ProposalRecord("deduction", program, inputs, outputs, **kw)  # type: ignore[arg-type]


def test_counts_trivial_duplicate_solved_and_determinism() -> None:
    records = [
        rec(IDENTITY, ("'a'",), ("'a'",), solve_rate=1.0),
        rec(CONSTANT, ("3",), ("42",), solve_rate=1.0),
        rec(REAL, solve_rate=0.25),
        # the same program, reformatted and commented: a duplicate
        rec(
            "def f(xs):\n    # sum of squares\n    total = 0\n    for x in xs:\n"
            "        total += x*x\n    return total",
            solve_rate=0.0,
        ),
        rec(REAL, ("[3]",), ("9",), valid=False, status="nondeterministic: second run differs"),
        rec(REAL, ("[4]",), ("16",), valid=False, status="syntax error"),
    ]
    s = compute_signals(records)
    assert (s.proposals, s.valid) == (6, 4)
    assert s.identity_share == pytest.approx(1 / 4)
    assert s.constant_share == pytest.approx(1 / 4)
    assert s.trivial_share == pytest.approx(2 / 4)
    assert s.duplicate_rate == pytest.approx(1 / 4)
    assert s.solved_share == pytest.approx(2 / 4)
    assert s.determinism_rejections == pytest.approx(1 / 6)
    expected_len = (len(IDENTITY) + len(CONSTANT) + len(REAL) + len(records[3].program)) / 4
    assert s.mean_program_chars == pytest.approx(expected_len)
    assert s.by_task_type["deduction"]["valid"] == 4


def test_behavioural_triviality_from_induction_pairs() -> None:
    # The AST alone does not show it: the function reads its argument but always returns 0.
    sneaky = "def f(x):\n    y = x * 0\n    return y - y"
    induction = ProposalRecord("induction", sneaky, ("1", "2", "3"), ("0", "0", "0"))
    assert compute_signals([induction]).constant_share == 1.0


def test_flags_fire_only_past_thresholds() -> None:
    healthy = [rec(REAL, (f"[{i}]",), (str(i * i),), solve_rate=0.5) for i in range(10)]
    assert flags(compute_signals(healthy)) == []
    gamed = [rec(IDENTITY, (f"{i}",), (f"{i}",), solve_rate=1.0) for i in range(5)] + [
        rec(IDENTITY, ("1",), ("1",), solve_rate=1.0) for _ in range(5)
    ]
    names = {f.split(":")[0] for f in flags(compute_signals(gamed))}
    assert names == {"trivial_programs", "always_solved", "short_programs"}
    dup = [rec(REAL, solve_rate=0.5) for _ in range(10)]
    assert [f.split(":")[0] for f in flags(compute_signals(dup))] == ["duplicates"]
    nondet = [rec(REAL, valid=False, status="nondeterministic") for _ in range(4)]
    assert [f.split(":")[0] for f in flags(compute_signals(nondet))] == ["determinism_rejections"]
    # A looser threshold silences the flag.
    loose = Thresholds(max_duplicate_rate=0.95)
    assert flags(compute_signals(dup), loose) == []


def test_thresholds_from_settings() -> None:
    from azr.settings import Settings

    t = Thresholds.from_settings(Settings().eval)
    assert t == Thresholds(
        max_trivial_share=Settings().eval.max_trivial_share,
        max_duplicate_rate=Settings().eval.max_duplicate_rate,
        max_solved_share=Settings().eval.max_solved_share,
        max_determinism_rejections=Settings().eval.max_determinism_rejections,
        min_program_chars=Settings().eval.min_program_chars,
    )


def test_empty_step_has_no_flags() -> None:
    assert flags(compute_signals([])) == []
