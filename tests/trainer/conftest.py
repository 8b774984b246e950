"""Trainer test fixtures: an in-process trainer (real Redis, the tiny model) that is closed after
the test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from azr.settings import Settings
from services.trainer.service import TrainerService
from tests.trainer.helpers import trainer_settings

MakeService = Callable[..., tuple[TrainerService, Settings]]


@pytest.fixture
def make_service(tmp_path: Path, tiny_model_dir: Path, redis_url: str) -> Iterator[MakeService]:
    """Build (and set up) trainers; `settings=` reuses a previous one's settings, as a restart."""
    made: list[TrainerService] = []

    def make(settings: Settings | None = None, **overrides: Any) -> tuple[TrainerService, Settings]:
        s = settings or trainer_settings(tmp_path / "data", tiny_model_dir, redis_url, **overrides)
        svc = TrainerService(s, redis_url)
        svc.setup()
        made.append(svc)
        return svc, s

    yield make
    for svc in made:
        svc.redis.close()
