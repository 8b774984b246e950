"""The harness end to end against a real executor (its own processes, real Redis) and the tiny
model on the transformers engine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from azr.settings import InferenceSettings, Settings
from services.cli import app
from services.evaluation.datasets import Bench, load_bench, select
from services.evaluation.executor_proc import executor_url
from services.evaluation.grader import ExecutorGrader
from services.evaluation.grading import gold_answer
from services.evaluation.harness import EvalConfig, evaluate_problems
from services.evaluation.run import EvalRequest, run_eval

ANSWER_BLOCK = {Bench.CRUXEVAL_O: "output", Bench.CRUXEVAL_I: "input", Bench.HUMANEVAL: "python"}


@pytest.fixture(scope="module")
def executor(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("executor-data")
    with executor_url(None, redis_url=redis_url, data_dir=data, log_path=data / "exec.log") as url:
        yield url


def _oracle(problems: list, wrong: bool):  # type: ignore[no-untyped-def]
    """A 'model' that writes each problem's gold answer (or a wrong one) in the AZR format, so
    the whole parse -> executor path is exercised with a known expected score."""
    by_text: dict[str, str] = {}

    def render(problem):  # type: ignore[no-untyped-def]
        from services.evaluation.prompting import build_prompt

        rendered = build_prompt(problem)
        value = gold_answer(problem)
        if wrong:
            value = {
                Bench.CRUXEVAL_O: "'certainly not the output'",
                Bench.CRUXEVAL_I: "object()",
                Bench.HUMANEVAL: f"def {problem.entry_point}(*args):\n    return None",
            }[problem.bench]
        block = ANSWER_BLOCK[problem.bench]
        by_text[rendered.text] = (
            f" I know it. </think>\n<answer>\n```{block}\n{value}\n```\n</answer>"
        )
        return rendered

    def generate(prompts, n, temperature, top_p, max_tokens, seed):  # type: ignore[no-untyped-def]
        return [[by_text[p]] * n for p in prompts]

    return render, generate


@pytest.mark.parametrize("bench", [Bench.CRUXEVAL_O, Bench.CRUXEVAL_I, Bench.HUMANEVAL])
def test_gold_answers_score_one_and_wrong_answers_zero(executor: str, bench: Bench) -> None:
    problems = select(load_bench(bench), 6)
    if bench is Bench.HUMANEVAL:
        # its entry point is itself named `f`, the name the executor calls
        problems += [p for p in load_bench(bench) if p.id == "HumanEval/106"]
    with ExecutorGrader(executor) as grader:
        for wrong, expected in ((False, True), (True, False)):
            render, generate = _oracle(problems, wrong)
            results = evaluate_problems(
                problems, generate, grader, EvalConfig(batch_size=4), renderer=render
            )
            assert [r.id for r in results] == [p.id for p in problems]
            assert all(r.format_ok == [True] for r in results)
            assert [r.correct[0] for r in results] == [expected] * len(problems), [
                (r.statuses, r.reasons) for r in results
            ]


@pytest.mark.slow  # about 60 s on a loaded 2-core machine (model load + CPU generation)
def test_tiny_model_end_to_end(executor: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        inference=InferenceSettings(engine="transformers", device="cpu"),
    )
    req = EvalRequest(
        model=str(tiny_model_dir),
        benches=(Bench.CRUXEVAL_O, Bench.CRUXEVAL_I),
        limit=4,
        samples=2,
        engine="transformers",
        out_dir=tmp_path / "out",
        executor_url=executor,
        max_tokens=24,
    )
    summaries = run_eval(req, settings)
    assert [s["bench"] for s in summaries] == ["cruxeval-o", "cruxeval-i"]
    for s in summaries:
        assert s["problems"] == 4 and s["samples"] == 2 and s["engine"] == "transformers"
        assert set(s["scores"]) == {"pass@1", "pass@2"}
        for sc in s["scores"].values():
            assert sc["ci_low"] <= sc["mean"] <= sc["ci_high"]
        rows = [
            json.loads(x) for x in (req.out_dir / s["files"]["results"]).read_text().splitlines()
        ]
        assert [r["id"] for r in rows] == [p.id for p in select(load_bench(s["bench"]), 4)]
        assert all(len(r["completions"]) == 2 and len(r["correct"]) == 2 for r in rows)
        # the summary's score is the mean of the per-problem pass@1 written beside it
        assert s["score"] == pytest.approx(sum(r["pass@1"] for r in rows) / 4)
        on_disk = json.loads((req.out_dir / s["files"]["summary"]).read_text())
        assert on_disk["score"] == s["score"]


def test_cli_rejects_bad_arguments() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["eval", "base", "--bench", "mbpp"])
    assert result.exit_code == 2 and "mbpp" in result.output
    result = runner.invoke(app, ["eval", "base", "--samples", "0"])
    assert result.exit_code == 2 and "samples" in result.output
    result = runner.invoke(app, ["eval", "/nonexistent/model", "--limit", "1"])
    assert result.exit_code == 2 and "nonexistent" in result.output
