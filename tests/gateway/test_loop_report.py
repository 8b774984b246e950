"""The end-of-run report from metrics as the real API serves them (store -> FastAPI app)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from azr.core.tasks import TaskType
from azr.loop import metrics as loop_metrics
from azr.settings import Settings
from services.gateway.app import create_app
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
            "echo_answer_share.png",
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


def test_summary_table_is_whole_when_written_to_a_pipe(tmp_path: Path) -> None:
    """`make run | tee log` or `> file`: rich assumes 80 columns off a terminal, which cut every
    cell to "0.00→…"; the summary must print every value in full."""
    import json
    import os
    import subprocess
    import sys

    store = TaskStore(f"sqlite:///{tmp_path / 'gw.db'}", migrate_schema=True)
    run_id = store.create_run("pipe", {})
    history = StoreHistory(store, run_id)
    first, second = _outcome(), _outcome()
    first.step, second.step = 1, 2
    second.answers[TaskType.DEDUCTION][1].correct = True
    second.answers[TaskType.DEDUCTION][1].reward = 1.0
    for out in (first, second):
        history.record_step(out.step, loop_metrics.step_metrics(out))
    seeding = {"stage": "seeding", "done": True, "rounds": 2, "max_rounds": 3, "target": 8}
    seeding |= {"heldout_target": 4, "buffers": {"deduction": 8}, "heldout": {"deduction": 4}}
    history.record_step(0, {"seeding": seeding})
    app = create_app(Settings(data_dir=tmp_path), None, store=store)
    metrics = TestClient(app).get(f"/v1/runs/{run_id}/metrics").json()
    (tmp_path / "m.json").write_text(json.dumps(metrics))

    code = (
        "import json, sys\n"
        "from services.gateway.cli_run import print_summary\n"
        f"m = json.load(open({str(tmp_path / 'm.json')!r}))\n"
        f"print_summary({{'id': {run_id}, 'status': 'finished'}}, m)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    text = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert "…" not in text
    solve = next(line for line in text.splitlines() if "deduction/solve" in line)
    # reward, solved, fmt err, closed and echo rates, first → last, each in full
    assert "-0.17→0.33" in solve and "0.33→0.67" in solve, text
    assert solve.count("→") == 5
    propose = next(line for line in text.splitlines() if "deduction/propose" in line)
    assert propose.count("→") == 6 and "0.50→0.50" in propose, text
    assert "seeding done (buffer+held-out: ded 8+4)" in text
