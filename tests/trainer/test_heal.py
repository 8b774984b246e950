"""The trainer heals what a cluster throws at it (real Redis, the tiny model): a parked batch is
marked for the gateway, a transient update error is retried, an acknowledged entry leaves the
stream, and a lost consumer group is created again."""

from __future__ import annotations

import json
import threading
import time

import pytest

from azr.common.checkpoints import list_versions
from azr.contracts.trainer import publish_reward_batch
from services.gateway.loop.adapters import RedisTrainer
from tests.trainer.conftest import MakeService
from tests.trainer.helpers import make_batch


def test_dead_lettered_batch_is_marked_and_the_gateway_sees_why(
    make_service: MakeService,
) -> None:
    svc, s = make_service(max_batch_tokens=10)
    publish_reward_batch(svc.redis, s, make_batch(batch_id="too-big"))
    assert svc.poll_once(block_ms=100) == 1
    mark = json.loads(svc.redis.hget(s.trainer.dead_batches_key, "too-big"))
    assert "max_batch_tokens=10" in mark["reason"]
    states = RedisTrainer(svc.redis, s).batch_states(["too-big", "never-sent"])
    assert states["too-big"].startswith("dead: ") and "max_batch_tokens" in states["too-big"]
    assert states["never-sent"] == "lost"
    assert svc.redis.xlen(s.trainer.stream) == 0  # acknowledged, so trimmed


def test_acknowledged_batches_leave_the_stream(make_service: MakeService) -> None:
    svc, s = make_service()
    publish_reward_batch(svc.redis, s, make_batch(batch_id="b1"))
    publish_reward_batch(svc.redis, s, make_batch(batch_id="b2", seed=1))
    assert svc.redis.xlen(s.trainer.stream) == 2
    assert RedisTrainer(svc.redis, s).batch_states(["b1", "b2"]) == {
        "b1": "queued",
        "b2": "queued",
    }
    svc.poll_once(block_ms=100)
    assert svc.redis.xlen(s.trainer.stream) == 1
    svc.poll_once(block_ms=100)
    assert svc.redis.xlen(s.trainer.stream) == 0
    assert list_versions(s.checkpoint_dir) == [0, 1, 2]
    assert RedisTrainer(svc.redis, s).batch_states(["b1"]) == {"b1": "trained"}


def test_transient_update_error_is_retried_not_dead_lettered(
    make_service: MakeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc, s = make_service()
    assert svc.updater is not None
    real_step = type(svc.updater).step
    failures = {"left": 1}

    # Fault injection at the disk boundary: the first update hits an I/O error.
    def flaky(self, batch, progress=None):  # type: ignore[no-untyped-def]
        if failures["left"]:
            failures["left"] -= 1
            raise OSError(5, "Input/output error")
        return real_step(self, batch, progress)

    monkeypatch.setattr(type(svc.updater), "step", flaky)
    monkeypatch.setattr(time, "sleep", lambda _s: None)
    publish_reward_batch(svc.redis, s, make_batch(batch_id="flaky"))
    svc.poll_once(block_ms=100)
    assert svc.counts["failed"] == 1 and svc.counts["dead_letter"] == 0
    assert svc.redis.hget(s.trainer.dead_batches_key, "flaky") is None
    svc.poll_once(block_ms=100)  # the pending entry again
    assert svc.counts["trained"] == 1
    assert list_versions(s.checkpoint_dir) == [0, 1]


def test_update_that_keeps_failing_is_dead_lettered_after_the_attempts(
    make_service: MakeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc, s = make_service(update_attempts=2)
    assert svc.updater is not None

    def broken(self, batch, progress=None):  # type: ignore[no-untyped-def]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(svc.updater), "step", broken)
    monkeypatch.setattr(time, "sleep", lambda _s: None)
    publish_reward_batch(svc.redis, s, make_batch(batch_id="doomed"))
    svc.poll_once(block_ms=100)
    svc.poll_once(block_ms=100)
    mark = json.loads(svc.redis.hget(s.trainer.dead_batches_key, "doomed"))
    assert "after 2 attempt(s)" in mark["reason"] and "No space left" in mark["reason"]


def test_lost_consumer_group_is_recreated(make_service: MakeService) -> None:
    svc, s = make_service()
    stop = threading.Event()
    loop = threading.Thread(target=svc.run, args=(stop, 100), daemon=True)
    loop.start()
    try:
        # what a Redis restarted without its data looks like to the trainer
        svc.redis.delete(s.trainer.stream, s.trainer.latest_key)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and svc.redis.get(s.trainer.latest_key) is None:
            time.sleep(0.1)
        assert svc.redis.get(s.trainer.latest_key) is not None, "not re-announced"
        assert "recreated" in (svc.status()["error"] or "")
        publish_reward_batch(svc.redis, s, make_batch(batch_id="after-loss"))
        while time.monotonic() < deadline and svc.counts["trained"] == 0:
            time.sleep(0.1)
        assert svc.counts["trained"] == 1
    finally:
        stop.set()
        loop.join(timeout=30)
