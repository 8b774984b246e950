"""`azr eval --bench indist`: a run's held-out set (exported by the gateway's store) loaded as
three benchmarks, asked and graded like the loop's solver in a real executor, and compared
between two models with the paired bootstrap."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from azr.core.tasks import Task, TaskType
from services.evaluation.datasets import (
    INDIST_BENCHES,
    Bench,
    DatasetError,
    drop_empty_indist,
    latest_heldout,
    load_bench,
    parse_benches,
)
from services.evaluation.executor_proc import executor_url
from services.evaluation.grader import ExecutorGrader
from services.evaluation.grading import gold_answer
from services.evaluation.harness import EvalConfig, evaluate_bench, save_run
from services.evaluation.prompting import as_task, build_prompt
from services.evaluation.run import compare_to
from services.gateway.heldout import HeldOutStore
from services.gateway.store import TaskStore

HELD = [
    Task(TaskType.DEDUCTION, "def f(x):\n    return x * 3", ("4",), ("12",)),
    Task(TaskType.DEDUCTION, "def f(s):\n    return s.upper()", ("'ab'",), ("'AB'",)),
    Task(TaskType.ABDUCTION, "def f(s):\n    return s[::-1]", ("'abc'",), ("'cba'",)),
    Task(
        TaskType.INDUCTION,
        "def f(a, b):\n    return a + b",
        ("1, 2", "3, 4", "5, 6", "7, 8"),
        ("3", "7", "11", "15"),
        "add the two numbers",
    ),
]
BLOCK = {TaskType.DEDUCTION: "output", TaskType.ABDUCTION: "input", TaskType.INDUCTION: "python"}
WRONG = {
    TaskType.DEDUCTION: "'certainly not'",
    TaskType.ABDUCTION: "object()",
    TaskType.INDUCTION: "def f(a, b):\n    return a - b",
}


@pytest.fixture(scope="module")
def executor(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("indist-executor")
    with executor_url(None, redis_url=redis_url, data_dir=data) as url:
        yield url


@pytest.fixture
def heldout_file(tmp_path: Path) -> Path:
    """The held-out set as the gateway exports it: stored in the database, then written out."""
    store = TaskStore(f"sqlite:///{tmp_path / 'gw.db'}", migrate_schema=True)
    run_id = store.create_run("r", {})
    held = HeldOutStore(store.sessions, run_id)
    assert held.add(HELD, 0) == 4 and held.add(HELD, 0) == 0  # a replay adds nothing
    return held.export(tmp_path / "data" / "runs" / str(run_id) / "heldout.jsonl")


def _oracle(wrong: bool):  # type: ignore[no-untyped-def]
    """A 'model' that writes each task's gold answer (or a wrong one) in the AZR format."""
    by_text: dict[str, str] = {}

    def render(problem):  # type: ignore[no-untyped-def]
        rendered = build_prompt(problem)
        tt = problem.task_type
        value = WRONG[tt] if wrong else gold_answer(problem)
        by_text[rendered.text] = (
            f" Sure. </think>\n<answer>\n```{BLOCK[tt]}\n{value}\n```\n</answer>"
        )
        return rendered

    def generate(prompts, n, temperature, top_p, max_tokens, seed):  # type: ignore[no-untyped-def]
        return [[by_text[p]] * n for p in prompts]

    return render, generate


def test_indist_names_and_files(heldout_file: Path, tmp_path: Path) -> None:
    assert parse_benches(["indist", "cruxeval-o", "indist-abduction"]) == (
        *INDIST_BENCHES,
        Bench.CRUXEVAL_O,
    )
    assert latest_heldout(tmp_path / "data") == heldout_file
    with pytest.raises(DatasetError, match="held-out"):
        latest_heldout(tmp_path / "elsewhere")
    counts = {b: len(load_bench(b, indist=heldout_file)) for b in INDIST_BENCHES}
    assert list(counts.values()) == [2, 1, 1]
    ded = load_bench(Bench.INDIST_DEDUCTION, indist=heldout_file)
    # asked exactly as the loop asks: the stored task itself
    assert [as_task(p) for p in ded] == [t for t in HELD if t.task_type is TaskType.DEDUCTION]
    with pytest.raises(DatasetError, match="--heldout"):
        load_bench(Bench.INDIST_INDUCTION)


def test_indist_skips_task_types_the_run_did_not_play(tmp_path: Path) -> None:
    """A deduction-only run exports only deduction tasks: `--bench indist` runs that one and
    skips the others instead of failing the whole evaluation."""
    only = tmp_path / "heldout.jsonl"
    task = HELD[0]
    row = {
        "task_type": task.task_type.value,
        "program": task.program,
        "inputs": list(task.inputs),
        "outputs": list(task.outputs),
    }
    only.write_text(json.dumps(row) + "\n")
    kept, skipped = drop_empty_indist([*INDIST_BENCHES, Bench.CRUXEVAL_O], only)
    assert kept == [Bench.INDIST_DEDUCTION, Bench.CRUXEVAL_O]
    assert skipped == [Bench.INDIST_ABDUCTION, Bench.INDIST_INDUCTION]
    with pytest.raises(DatasetError, match="no tasks for indist-abduction"):
        drop_empty_indist([Bench.INDIST_ABDUCTION], only)


def test_gold_scores_one_wrong_zero_and_the_paired_comparison(
    executor: str, heldout_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "eval"
    summaries: dict[bool, list[dict[str, object]]] = {False: [], True: []}
    with ExecutorGrader(executor) as grader:
        for wrong, label in ((True, "base"), (False, "v000003")):
            render, generate = _oracle(wrong)
            for bench in INDIST_BENCHES:
                results, summary = evaluate_bench(
                    bench,
                    generate,
                    grader,
                    EvalConfig(batch_size=4, resamples=500),
                    indist_path=heldout_file,
                    renderer=render,
                    meta={"model_label": label},
                )
                assert [r.correct for r in results] == [[not wrong]] * len(results), [
                    (r.statuses, r.reasons) for r in results
                ]
                assert summary["score"] == (0.0 if wrong else 1.0)
                jsonl, _ = save_run(out, results, summary)
                summary["files"] = {"results": jsonl.name}
                summaries[wrong].append(summary)
    table = compare_to("base", summaries[False], out)  # type: ignore[arg-type]
    rows = table.splitlines()[2:]
    assert [r.split("|")[1].strip() for r in rows] == [b.value for b in INDIST_BENCHES]
    # every problem went from wrong to right: a paired difference of +1 whose CI excludes 0
    assert all("+1.000 [+1.000, +1.000]" in r and "| gain |" in r for r in rows), table
    missing = compare_to("v000009", summaries[False], out)  # type: ignore[arg-type]
    assert "no v000009.indist-deduction.jsonl" in missing
