"""`azr tasks ...` / `azr weights ...` against a live gateway over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from azr.settings import Settings
from services.cli import app as cli
from services.gateway.app import create_app
from services.gateway.store import TaskStore
from tests.gateway.gw_fixtures import TOKEN, LocalControl, running_server, write_checkpoint


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[str, TaskStore, int]]:
    settings = Settings(data_dir=tmp_path / "data", api_token=TOKEN)
    app = create_app(settings, LocalControl(settings.checkpoint_dir))
    store: TaskStore = app.state.store
    run = store.create_run("cli", {})
    store.seed(run)
    folder, checksum = write_checkpoint(settings.checkpoint_dir, 1)
    store.record_weight_version(1, str(folder), checksum, run_id=run)
    try:
        with running_server(app) as url:
            yield url, store, run
    finally:
        store.engine.dispose()


def test_cli_tasks_and_weights(gateway: tuple[str, TaskStore, int], tmp_path: Path) -> None:
    url, store, run = gateway
    runner = CliRunner()
    common = ["--url", url, "--token", TOKEN]
    prog = tmp_path / "prog.py"
    prog.write_text("def f(xs):\n    return sorted(xs)[-1]\n")
    res = runner.invoke(
        cli,
        [
            "tasks",
            "inject",
            "--run",
            str(run),
            "--type",
            "deduction",
            "--program",
            str(prog),
            "-i",
            "[3, 9, 1]",
            *common,
        ],
    )
    assert res.exit_code == 0, res.output
    assert "['9']" in res.output
    injected = store.list_tasks(store_filter(run, "injected"))[0][0]
    res = runner.invoke(cli, ["tasks", "list", "--run", str(run), "--json", *common])
    assert res.exit_code == 0
    assert json.loads(res.output)["total"] == 4  # 3 seeds + 1 injected
    res = runner.invoke(cli, ["tasks", "show", str(injected.id), *common])
    assert res.exit_code == 0 and "f([3, 9, 1]) -> 9" in res.output
    res = runner.invoke(cli, ["tasks", "quarantine", str(injected.id), "--reason", "demo", *common])
    assert res.exit_code == 0 and "quarantined" in res.output
    out = tmp_path / "tasks.jsonl"
    res = runner.invoke(cli, ["tasks", "export", "--run", str(run), "-o", str(out), *common])
    assert res.exit_code == 0 and "wrote 4 tasks" in res.output
    assert len(out.read_text().splitlines()) == 4
    res = runner.invoke(cli, ["weights", "swap", "1", *common])
    assert res.exit_code == 0 and "loaded v1" in res.output
    res = runner.invoke(cli, ["weights", "current", *common])
    assert "current: v1" in res.output
    # Errors come back as a message and exit code 1, never a traceback.
    res = runner.invoke(cli, ["tasks", "show", "9999", *common])
    assert res.exit_code == 1 and "404" in res.output
    res = runner.invoke(cli, ["weights", "swap", "1", "--url", url, "--token", "wrong"])
    assert res.exit_code == 1 and "401" in res.output


def store_filter(run: int, source: str):  # type: ignore[no-untyped-def]
    from services.gateway.store import TaskFilter

    return TaskFilter(run_id=run, source=source)
