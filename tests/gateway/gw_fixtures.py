"""Fixtures for the gateway DB/API tests (imported by the test modules that use them).

`db_url` is parametrised over SQLite (a fresh file per test) and PostgreSQL (a fresh schema per
test, dropped afterwards; skipped with a reason when no server answers)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from services.gateway.db import make_engine
from services.gateway.store import TaskStore
from tests.conftest import postgres_url


@pytest.fixture(
    name="db_engine",
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def db_engine_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
        yield engine
        engine.dispose()
        return
    url = postgres_url()
    if url is None:
        pytest.skip("no PostgreSQL server (set AZR_TEST_POSTGRES_URL or run one on 127.0.0.1:5432)")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(url, connect_args={"options": f"-csearch_path={schema}"})
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(name="store")
def store_fixture(db_engine: sa.Engine) -> TaskStore:
    return TaskStore(db_engine, buffer_cap=16384, migrate_schema=True)


# ------------------------------------------------------------------------------ API fixtures
class LocalControl:
    """A small real `RunControl` for the API tests.

    Run actions are recorded (driving the loop is the runner's job, tested elsewhere); weight
    swaps verify the checkpoint on disk like the runner does; validation runs the program in a
    fresh isolated interpreter, twice with different hash seeds (deterministic outputs only),
    and reports the executor's result shape. This stands in for the executor service at that
    boundary: the API's behaviour under test is how it routes the verdict, not the sandbox.
    """

    def __init__(self, checkpoint_dir: Path) -> None:
        self.checkpoint_dir = checkpoint_dir
        self.calls: list[tuple[str, int]] = []

    def start(self, run_id: int) -> None:
        self.calls.append(("start", run_id))

    def pause(self, run_id: int) -> None:
        self.calls.append(("pause", run_id))

    def resume(self, run_id: int) -> None:
        self.calls.append(("resume", run_id))

    def stop(self, run_id: int) -> None:
        self.calls.append(("stop", run_id))

    def swap_weights(self, version: int) -> dict[str, object]:
        from azr.common.checkpoints import ChecksumMismatch, verify_checkpoint, version_dir
        from services.gateway.control import UnknownVersion

        try:
            checksum = verify_checkpoint(version_dir(self.checkpoint_dir, version))
        except ChecksumMismatch as exc:
            raise UnknownVersion(str(exc)) from exc
        self.calls.append(("swap", version))
        return {"loaded": version, "checksum": checksum}

    def validate_task(
        self, task_type: str, program: str, inputs: list[str], message: str | None
    ) -> dict[str, object]:
        import json
        import subprocess
        import sys

        script = (
            "import json, sys\n"
            "ns = {}\n"
            "exec(compile(sys.argv[1], '<task>', 'exec'), ns)\n"
            "print(json.dumps([repr(eval('f(' + a + ')', ns)) for a in json.loads(sys.argv[2])]))\n"
        )
        runs = []
        for seed in ("1", "2"):
            proc = subprocess.run(
                [sys.executable, "-I", "-c", script, program, json.dumps(inputs)],
                capture_output=True,
                text=True,
                timeout=10,
                env={"PYTHONHASHSEED": seed},
            )
            if proc.returncode != 0:
                last = (proc.stderr.strip().splitlines() or ["error"])[-1]
                return {"valid": False, "outputs": [], "reason": last, "status": "error"}
            runs.append(json.loads(proc.stdout))
        if runs[0] != runs[1]:
            return {
                "valid": False,
                "outputs": [],
                "reason": "non-deterministic output",
                "status": "nondeterministic",
            }
        return {"valid": True, "outputs": runs[0], "reason": None, "status": "ok"}


def write_checkpoint(root: Path, version: int) -> tuple[Path, str]:
    """A checkpoint folder in the shared format (a small weights file plus its manifest)."""
    from azr.common.checkpoints import version_dir, write_manifest

    folder = version_dir(root, version)
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(bytes([version % 256]) * 64)
    return folder, write_manifest(folder, version)


TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(name="api")
def api_fixture(tmp_path: Path) -> Iterator[tuple[object, TaskStore, LocalControl]]:
    """(TestClient, store, control) over a fresh SQLite database."""
    from fastapi.testclient import TestClient

    from azr.settings import Settings
    from services.gateway.app import create_app

    settings = Settings(data_dir=tmp_path / "data", api_token=TOKEN)
    control = LocalControl(settings.checkpoint_dir)
    app = create_app(settings, control)
    with TestClient(app) as client:
        yield client, app.state.store, control
    app.state.store.engine.dispose()


@contextlib.contextmanager
def running_server(app: object) -> Iterator[str]:
    """Serve `app` with uvicorn on a free port in a thread; yields the base URL."""
    import socket
    import threading
    import time

    import httpx
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
