"""Learning-curve plots and the paired before/after comparison."""

from __future__ import annotations

from pathlib import Path

from services.evaluation.report import compare, markdown_row, plot_curves
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
