"""Fixtures shared by every test area: a real Redis, PostgreSQL when reachable, the tiny model."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from azr.common.redis_server import EmbeddedRedis


@pytest.fixture(autouse=True)
def _no_fatal_state_leaks() -> Iterator[None]:
    """A test that drives a service into its fatal state in-process must not leave /healthz
    answering 503 for the tests after it."""
    from azr.common.http import clear_fatal

    yield
    clear_fatal()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server: AZR_TEST_REDIS_URL when set, else an embedded one for the session."""
    configured = os.environ.get("AZR_TEST_REDIS_URL")
    if configured:
        yield configured
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def postgres_url() -> str | None:
    """PostgreSQL for the database tests: AZR_TEST_POSTGRES_URL, else the local default if it
    answers (CI has one); None when there is none."""
    url = os.environ.get(
        "AZR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
    except Exception:
        return None
    return url


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny randomly initialised Llama with the SmolLM2 tokenizer, saved as an HF directory."""
    from azr.common.model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))
