"""The offline benchmark files load completely and map to the right AZR task types."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from azr.core.tasks import TaskType
from services.evaluation.datasets import (
    Bench,
    DatasetError,
    load_bench,
    load_cruxeval,
    select,
)


def test_cruxeval_has_800_problems_with_parseable_fields() -> None:
    problems = load_bench("cruxeval-o")
    assert len(problems) == 800
    assert len({p.id for p in problems}) == 800
    for p in problems[:50]:
        assert p.task_type is TaskType.DEDUCTION
        ast.parse(p.program)
        ast.parse(f"f({p.input})", mode="eval")
        ast.parse(p.output, mode="eval")
    assert load_bench(Bench.CRUXEVAL_I)[0].task_type is TaskType.ABDUCTION


def test_humaneval_has_164_problems() -> None:
    problems = load_bench("humaneval")
    assert len(problems) == 164
    first = problems[0]
    assert first.id == "HumanEval/0"
    assert first.entry_point in first.prompt
    assert "def check(" in first.test
    assert first.program.startswith(first.prompt)


def test_select_is_a_stable_prefix() -> None:
    problems = load_bench("cruxeval-i")
    assert [p.id for p in select(problems, 5)] == [p.id for p in problems[:5]]
    assert select(problems, None) == problems


def test_missing_or_bad_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        load_cruxeval(Bench.CRUXEVAL_O, tmp_path / "nope.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"code": "def f(): pass"}\n')
    with pytest.raises(DatasetError, match=r"bad\.jsonl:1"):
        load_cruxeval(Bench.CRUXEVAL_O, bad)
    with pytest.raises(ValueError):
        load_bench("mbpp")
