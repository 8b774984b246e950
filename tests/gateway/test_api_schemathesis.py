"""Property-based fuzzing of the gateway's OpenAPI: no input may produce a 5xx."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from azr.core.tasks import Task, TaskType
from azr.settings import Settings
from services.gateway.app import create_app
from tests.gateway.gw_fixtures import AUTH, TOKEN, LocalControl, write_checkpoint


def _build_app() -> tuple[Any, Path]:
    # Built at import: schemathesis's pytest integration needs the schema when collecting
    # (its lazy fixture loader does not work with this pytest). Cleaned up by the fixture below.
    data = Path(tempfile.mkdtemp(prefix="azr-gw-fuzz-"))
    cfg = Settings(data_dir=data, api_token=TOKEN)
    app = create_app(cfg, LocalControl(cfg.checkpoint_dir))
    store = app.state.store
    # Real rows, so that small ids hit existing runs, tasks and versions as well as missing ones.
    run = store.create_run("fuzz", {"buffer_cap": 50})
    store.seed(run)
    for i in range(3):
        store.add_task(
            run,
            Task(TaskType.DEDUCTION, f"def f(x):\n    return x + {i}", ("1",), (str(1 + i),)),
            step=i,
            proposer_version=0,
            validation={},
        )
    store.record_step(
        run,
        1,
        {"timings": {"propose": 1.0}},
        {"deduction/propose": {"valid_rate": 1.0, "tokens": 5}},
    )
    folder, checksum = write_checkpoint(cfg.checkpoint_dir, 1)
    store.record_weight_version(1, str(folder), checksum, run_id=run)
    return app, data


APP, DATA = _build_app()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    APP.state.store.engine.dispose()
    shutil.rmtree(DATA, ignore_errors=True)


@schema.parametrize()
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors(case: Any) -> None:
    case.call_and_validate(headers=AUTH, checks=[not_a_server_error])
