"""Learning-curve plots and the paired before/after comparison."""

from __future__ import annotations

import json
from pathlib import Path

from services.evaluation.report import compare, input_echo, markdown_row, plot_curves
from services.evaluation.results import ProblemResult, summarise, write_results


def _write(tmp: Path, stem: str, correct: list[bool]) -> Path:
    results = [
        ProblemResult(f"p{i}", "cruxeval-o", ["x"], ["1"], [True], [c], ["ok"])
        for i, c in enumerate(correct)
    ]
    summary = summarise(results, meta={"bench": "cruxeval-o"}, samples=1, resamples=200, seed=0)
    jsonl, _ = write_results(tmp, stem, results, summary)
    return jsonl


def test_compare_reads_a_clear_gain_and_no_change(tmp_path: Path) -> None:
    before = _write(tmp_path, "base.cruxeval-o", [False] * 40 + [True] * 10)
    after = _write(tmp_path, "v1.cruxeval-o", [True] * 45 + [False] * 5)
    gain = compare(before, after)
    assert gain["verdict"] == "gain"
    assert gain["diff"]["mean"] == gain["after"]["mean"] - gain["before"]["mean"]
    # one more problem right out of 50 is within noise
    slight = _write(tmp_path, "v2.cruxeval-o", [True] + [False] * 39 + [True] * 10)
    assert compare(before, slight)["verdict"].startswith("no change")
    assert markdown_row("cruxeval-o", gain).startswith("| cruxeval-o | 50 |")


def test_plot_curves_writes_pngs(tmp_path: Path) -> None:
    groups = [
        {
            "step": s,
            "task_type": t,
            "role": r,
            "solve_rate": 0.1 * s,
            "valid_rate": 0.5,
            "learnability": 0.2,
            "reward_mean": -0.5,
            "format_error_rate": 0.3,
            "extra": {},
        }
        for s in (1, 2, 3)
        for t in ("deduction", "abduction")
        for r in ("propose", "solve")
    ]
    steps = [
        {
            "step": s,
            "metrics": {
                "signals": {
                    "trivial_share": 0.1,
                    "duplicate_rate": 0.0,
                    "solved_share": 0.2,
                    "determinism_rejections": 0.0,
                    "mean_program_chars": 80.0,
                },
                "eval": {"cruxeval-o": {"score": 0.1, "ci_low": 0.0, "ci_high": 0.2}},
                "eval_indist": {"deduction": {"score": 0.3, "ci_low": 0.1, "ci_high": 0.5}},
            },
        }
        for s in (1, 2, 3)
    ]
    # the seeding stage's row (step 0) carries no curves
    steps.insert(0, {"step": 0, "metrics": {"seeding": {"rounds": 1}}})
    written = plot_curves({"groups": groups, "steps": steps}, tmp_path / "img")
    names = {p.name for p in written}
    assert names == {"hacking_signals.png", "inloop_cruxeval.png", "inloop_indist.png"}
    for p in written:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_input_echo_counts_answers_that_repeat_the_tasks_input(tmp_path: Path) -> None:
    """`echo` (docs/results.md, run 8): answers equal to the task's input, "2." and "2" alike,
    against the held-out tasks whose output is their input."""
    heldout = tmp_path / "heldout.jsonl"
    rows = [
        {
            "task_type": "deduction",
            "program": "def f(x):\n    return x + 1",
            "inputs": ["1"],
            "outputs": ["2"],
        },
        {
            "task_type": "deduction",
            "program": "def f(a, b):\n    return a",
            "inputs": ["3, 4"],
            "outputs": ["3"],
        },
        {
            "task_type": "deduction",
            "program": "def f(x):\n    return x",
            "inputs": ["5"],
            "outputs": ["5"],
        },
        {
            "task_type": "deduction",
            "program": "def f(x):\n    return -x",
            "inputs": ["0"],
            "outputs": ["0"],
        },
    ]
    heldout.write_text("".join(json.dumps(r) + "\n" for r in rows))
    answers = {1: ["1.", "2", "1"], 2: ["3,4", "3"], 3: ["5"], 4: ["7"]}
    results = [
        ProblemResult(
            f"deduction/{n}",
            "indist-deduction",
            a,
            a,
            [True] * len(a),
            [False] * len(a),
            ["ok"] * len(a),
        )
        for n, a in answers.items()
    ]
    summary = summarise(
        results, meta={"bench": "indist-deduction"}, samples=1, resamples=50, seed=0
    )
    jsonl, _ = write_results(tmp_path, "v1.indist-deduction", results, summary)
    echo = input_echo(heldout, jsonl)
    assert echo["answers"] == 7
    assert echo["echo_share"] == 4 / 7  # "1.", "1", "3,4" (spacing ignored), "5"
    assert echo["task_share"] == 2 / 4
