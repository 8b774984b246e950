"""The in-loop monitor through the loop's own executor adapter and a real executor."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from azr.core.tasks import Answer, Task, TaskType
from services.evaluation.executor_proc import executor_url
from services.evaluation.monitor import evaluate_subset, should_evaluate
from services.gateway.loop.adapters import HttpExecutor


@pytest.fixture(scope="module")
def loop_executor(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HttpExecutor]:
    data = tmp_path_factory.mktemp("monitor-executor")
    with executor_url(None, redis_url=redis_url, data_dir=data) as url:
        adapter = HttpExecutor(url)
        yield adapter
        adapter.close()


@dataclass
class _Gen:
    answer: Answer


class OracleSolver:
    """Answers each task with its gold value (or, when `wrong`, a value that cannot match) and
    records what it was asked, so the test sees which tasks the monitor sent."""

    def __init__(self, wrong: bool = False) -> None:
        self.wrong = wrong
        self.asked: list[Task] = []
        self.sampling: object = None

    def solve(self, tasks: list[Task], n: int, sampling: object) -> list[list[_Gen]]:
        self.asked.extend(tasks)
        self.sampling = sampling
        out = []
        for t in tasks:
            if t.task_type is TaskType.DEDUCTION:
                value = "'no'" if self.wrong else t.output
            else:
                value = "object()" if self.wrong else t.input
            out.append([_Gen(Answer(t.task_type, value, format_ok=not self.wrong))] * n)
        return out

    def current_version(self) -> int:
        return 7


def test_monitor_scores_gold_one_and_wrong_zero(loop_executor: HttpExecutor) -> None:
    gold = OracleSolver()
    result = evaluate_subset(gold, loop_executor, limit=5, max_tokens=64)
    assert result["version"] == 7 and result["limit"] == 5
    for bench in ("cruxeval-o", "cruxeval-i"):
        assert result[bench]["score"] == 1.0 and result[bench]["n"] == 5
        assert result[bench]["format_ok_rate"] == 1.0
    # the fixed subset: the first five problems of each, asked greedily
    assert len(gold.asked) == 10
    assert getattr(gold.sampling, "temperature", None) == 0.0
    wrong = evaluate_subset(OracleSolver(wrong=True), loop_executor, limit=5)
    assert wrong["cruxeval-o"]["score"] == 0.0 and wrong["cruxeval-i"]["score"] == 0.0
    assert wrong["cruxeval-o"]["ci_high"] == 0.0


def test_should_evaluate() -> None:
    assert [s for s in range(0, 11) if should_evaluate(s, 5)] == [5, 10]
    assert not any(should_evaluate(s, 0) for s in range(10))
