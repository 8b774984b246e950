"""While the loop waits for weights it checks the batches it published (real Redis): a batch
the trainer dead-lettered fails the step at once with the trainer's reason, and a batch Redis
lost (restarted without its data) is published again from the step journal."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
import redis

from azr.loop.journal import StepJournal
from azr.loop.orchestrator import (
    BatchDeadLettered,
    LoopPorts,
    Orchestrator,
    WeightsTimeout,
)
from azr.loop.records import batch_id
from azr.settings import LoopSettings, Settings
from services.gateway.loop.adapters import RedisTrainer
from tests.trainer.helpers import make_batch

RUN = 7


@pytest.fixture
def parts(tmp_path: Path, redis_url: str) -> tuple[Orchestrator, RedisTrainer, Settings]:
    settings = Settings(data_dir=tmp_path, redis_url=redis_url)
    tag = uuid.uuid4().hex[:8]
    t = settings.trainer
    t.stream, t.latest_key = f"test:{tag}:batches", f"test:{tag}:latest"
    t.batch_versions_key, t.dead_batches_key = f"test:{tag}:versions", f"test:{tag}:dead"
    trainer = RedisTrainer(redis.Redis.from_url(redis_url), settings)
    ports = LoopPorts(None, None, None, trainer, None)  # type: ignore[arg-type]
    journal = StepJournal(tmp_path / "journal", RUN)
    batch = make_batch(batch_id=batch_id(RUN, 1), seed=1).model_dump(mode="json")
    journal.write_pending(1, {"batch": batch})
    cfg = LoopSettings(steps=3, mode="sync")
    orch = Orchestrator(RUN, cfg, ports, journal, weights_timeout_s=2.0, poll_s=0.05, check_s=0.0)
    orch.base_version = 0
    return orch, trainer, settings


def test_dead_lettered_batch_fails_the_step_at_once(
    parts: tuple[Orchestrator, RedisTrainer, Settings],
) -> None:
    orch, trainer, settings = parts
    record = {"reason": "update failed after 3 attempt(s): OSError: disk gone"}
    trainer.redis.hset(settings.trainer.dead_batches_key, batch_id(RUN, 1), json.dumps(record))
    t0 = time.monotonic()
    with pytest.raises(BatchDeadLettered, match=r"step 1: .*dead-lettered.*disk gone"):
        orch.sync_weights(2)
    assert time.monotonic() - t0 < 1.0  # not the weights timeout


def test_batch_lost_by_redis_is_published_again(
    parts: tuple[Orchestrator, RedisTrainer, Settings],
) -> None:
    orch, trainer, settings = parts
    assert trainer.batch_states([batch_id(RUN, 1)]) == {batch_id(RUN, 1): "lost"}
    with pytest.raises(WeightsTimeout):  # no trainer here: the version never comes
        orch.sync_weights(2)
    assert trainer.batch_states([batch_id(RUN, 1)]) == {batch_id(RUN, 1): "queued"}
    ids = [f[b"batch_id"].decode() for _, f in trainer.redis.xrange(settings.trainer.stream)]
    assert ids == [batch_id(RUN, 1)]  # once, although checked on every poll


def test_redis_calls_ride_out_a_short_outage(tmp_path: Path) -> None:
    import threading

    from azr.common.redis_server import EmbeddedRedis
    from tests.trainer.process import free_port

    server = EmbeddedRedis(tmp_path / "redis", port=free_port())
    settings = Settings(data_dir=tmp_path, redis_url=server.url)
    trainer = RedisTrainer(redis.Redis.from_url(server.url), settings)
    got: dict[str, object] = {}

    def ask() -> None:
        try:
            got["version"] = trainer.latest_version()
        except Exception as exc:
            got["error"] = exc

    # The loop asks while Redis is down; Redis comes back a second later. (Started from this
    # thread: the embedded server dies with the thread that spawned it.)
    worker = threading.Thread(target=ask)
    worker.start()
    time.sleep(1.0)
    assert worker.is_alive(), got
    server.start()
    try:
        worker.join(timeout=30)
        assert got == {"version": (0, None)}
    finally:
        server.stop()
