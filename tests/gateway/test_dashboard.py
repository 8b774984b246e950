"""The dashboard in a real headless Chromium against a live gateway with run data."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from azr.core.tasks import GROUPS, Role, Task, TaskType, group_key
from azr.settings import Settings
from services.gateway.app import create_app
from services.gateway.store import TaskStore
from tests.gateway.gw_fixtures import running_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
STEPS = 5

pytestmark = pytest.mark.slow


def populate(store: TaskStore) -> tuple[int, int]:
    """A run with STEPS steps of metrics for all six groups, tasks and a weight version.
    Returns (run id, the number of chart points the page should draw)."""
    run = store.create_run("dashboard-demo", {"batch_size": 4})
    store.set_run_status(run, "running")
    store.seed(run)
    for step in range(1, STEPS + 1):
        groups = {}
        for ttype, role in GROUPS:
            off = 0.05 * list(TaskType).index(ttype)  # keeps the task types' lines apart
            m = {
                "n": 4,
                "reward_mean": 0.1 * step - off - (0.2 if role == Role.PROPOSE else 0.0),
                "format_error_rate": 0.5 / step + off,
                "tokens": 300 + 10 * step,
            }
            if role == Role.PROPOSE:
                m |= {
                    "valid_rate": min(1.0, 0.4 + 0.1 * step - off),
                    "learnability": 0.05 * step + off,
                }
            else:
                m |= {"solve_rate": 0.15 * step - off}
            groups[group_key(ttype, role)] = m
        store.record_step(
            run, step, {"timings": {"propose": 2.0, "solve": 3.0, "train": 5.0}}, groups
        )
        store.add_task(
            run,
            Task(TaskType.DEDUCTION, f"def f(x):\n    return x * {step}", ("3",), (str(3 * step),)),
            step=step,
            proposer_version=step - 1,
            validation={"valid": True, "status": "ok"},
        )
        store.set_current_step(run, step)
    store.record_weight_version(STEPS, f"checkpoints/v{STEPS:06d}", "c" * 64, run_id=run)
    store.mark_loaded(STEPS)
    # reward: 6 groups, solve: 3, valid: 3, learnability: 3, format: 6, throughput: 1 series
    return run, STEPS * (6 + 3 + 3 + 3 + 6 + 1)


@pytest.fixture
def live_gateway(tmp_path: Path) -> Iterator[tuple[str, int, int]]:
    settings = Settings(data_dir=tmp_path / "data")
    app = create_app(settings)
    run, expected = populate(app.state.store)
    try:
        with running_server(app) as url:
            yield url, run, expected
    finally:
        app.state.store.engine.dispose()


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chrome-profile'}",
    ]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed")
def test_dashboard_renders_charts_with_data(
    live_gateway: tuple[str, int, int], tmp_path: Path
) -> None:
    url, run, expected = live_gateway
    page = f"{url}/?run={run}&poll=60000"
    dump = chromium(tmp_path, "--virtual-time-budget=8000", "--dump-dom", page)
    dom = dump.stdout
    assert 'data-ready="1"' in dom, dump.stderr[-2000:]
    points = re.findall(r'<circle[^>]*data-point="1"', dom)
    assert len(points) == expected, f"{len(points)} points drawn, expected {expected}"
    assert f'data-points="{expected}"' in dom
    # Every group has its series in the reward chart, one point per step.
    reward = dom[dom.index('id="chart-reward"') : dom.index('id="chart-solve"')]
    for ttype, role in GROUPS:
        series = reward[reward.index(f'data-series="{group_key(ttype, role)}"') :]
        assert len(re.findall(r"data-point=", series.split("</g>")[0])) == STEPS
    # Throughput = tokens of all groups / summed phase timings, for the last step.
    last_tokens = 6 * (300 + 10 * STEPS)
    assert f'data-value="{last_tokens / 10.0:g}"' in dom
    # Recent tasks with their programs and verdicts, the run's status, the loaded version.
    assert f"return x * {STEPS}" in dom and ">ok<" in dom
    assert ">running<" in dom and f"weights v{STEPS}" in dom
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    shot.unlink(missing_ok=True)
    res = chromium(
        tmp_path,
        "--virtual-time-budget=8000",
        "--window-size=1400,1700",
        "--hide-scrollbars",
        f"--screenshot={shot}",
        page,
    )
    assert shot.is_file() and shot.stat().st_size > 10_000, res.stderr[-2000:]
