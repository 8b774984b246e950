"""The end-of-run report from metrics as the real API serves them (store -> FastAPI app)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from azr.core.tasks import TaskType
from azr.settings import Settings
from services.gateway.app import create_app
from services.gateway.loop import metrics as loop_metrics
from services.gateway.loop.adapters import StoreHistory
from services.gateway.report import summary_rows, write_report
from services.gateway.store import TaskStore
from tests.gateway.test_loop_parts import _outcome


def test_report_plots_and_summarises_recorded_steps(tmp_path: Path) -> None:
    store = TaskStore(f"sqlite:///{tmp_path / 'gw.db'}", migrate_schema=True)
    run_id = store.create_run("report", {})
    history = StoreHistory(store, run_id)
    first, second = _outcome(), _outcome()
    first.step, second.step = 1, 2
    # step 2: the solver got its wrong answer right this time
    second.answers[TaskType.DEDUCTION][1].correct = True
    second.answers[TaskType.DEDUCTION][1].reward = 1.0
    for out in (first, second):
        history.record_step(out.step, loop_metrics.step_metrics(out))

    app = create_app(Settings(data_dir=tmp_path), None, store=store)
    metrics = TestClient(app).get(f"/v1/runs/{run_id}/metrics").json()
    report = write_report(metrics, tmp_path / "report", title="test run")

    pngs = sorted(p.name for p in report.parent.glob("*.png"))
    assert pngs == sorted(
        [
            "reward_mean.png",
            "valid_rate.png",
            "solve_rate.png",
            "learnability.png",
            "format_error_rate.png",
            "answer_closed_rate.png",
            "timings.png",
        ]
    )
    assert all((report.parent / p).stat().st_size > 1000 for p in pngs)
    rows = {r["group"]: r for r in summary_rows(metrics)}
    solve = rows["deduction/solve"]
    assert solve["solve_rate"] == pytest.approx((1 / 3, 2 / 3))
    assert solve["reward_mean"] == pytest.approx(((1 - 0.5 - 1) / 3, (1 + 1 - 1) / 3))
    assert rows["deduction/propose"]["valid_rate"] == pytest.approx((0.5, 0.5))
    assert "learnability" not in rows["deduction/solve"]
    assert rows["deduction/propose"]["answer_closed_rate"] == pytest.approx((0.0, 0.0))
    text = report.read_text()
    assert "| deduction/solve |" in text and "![reward_mean.png](reward_mean.png)" in text
