"""Chaos: Redis restarts with its data lost while a real trainer process runs. The trainer
answers `NOGROUP` by creating its group again and announcing its version again; the batch the
restart lost is published again (what the loop does from its journal) and trained once; a
batch it had already trained on is not sent, nor trained, twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from azr.common.checkpoints import list_versions, read_manifest, version_dir
from azr.common.redis_server import EmbeddedRedis
from azr.contracts.trainer import publish_reward_batch
from services.gateway.loop.adapters import RedisTrainer
from tests.trainer.helpers import make_batch, trainer_settings
from tests.trainer.process import TrainerProcess, free_port

pytestmark = pytest.mark.slow


def test_redis_loses_its_data_mid_run(tmp_path: Path, tiny_model_dir: Path) -> None:
    port = free_port()
    server = EmbeddedRedis(tmp_path / "redis-1", port=port)
    url = server.start()
    s = trainer_settings(tmp_path / "data", tiny_model_dir, url)
    trainer = TrainerProcess(s, tmp_path / "trainer.log")
    try:
        trainer.wait_ready()
        r = redis.Redis.from_url(url)
        gateway = RedisTrainer(r, s)
        first, second = make_batch("first", seed=1), make_batch("second", seed=2)
        publish_reward_batch(r, s, first)
        trainer.wait_for(lambda st: st["version"] == 1 and st["phase"] == "idle")

        # Redis dies and comes back empty on the same address (no volume, or a new pod).
        server.stop()
        server = EmbeddedRedis(tmp_path / "redis-2", port=port)
        server.start()
        r = redis.Redis.from_url(url)
        gateway = RedisTrainer(r, s)
        st = trainer.wait_for(lambda st: "recreated" in (st["error"] or ""), timeout_s=30)
        assert st["version"] == 1
        announced = json.loads(r.get(s.trainer.latest_key))
        assert announced["version"] == 1, "the trainer announced its version again"
        assert gateway.latest_version()[0] == 1

        # The loop publishes the step the loss swallowed, and a replay of one already trained.
        assert gateway.batch_states(["second"]) == {"second": "lost"}
        assert gateway.publish(second.model_dump(mode="json")) != "duplicate"
        # the re-announcement restored version 1's batch id, so a replay is not even sent
        assert gateway.batch_states(["first"]) == {"first": "trained"}
        assert gateway.publish(first.model_dump(mode="json")) == "duplicate"
        st = trainer.wait_for(lambda st: st["version"] == 2 and st["phase"] == "idle")
        assert st["counts"]["trained"] == 2 and st["counts"]["dead_letter"] == 0
        assert list_versions(s.checkpoint_dir) == [0, 1, 2]
        assert read_manifest(version_dir(s.checkpoint_dir, 2))["batch_id"] == "second"
        assert gateway.batch_states(["second"]) == {"second": "trained"}
        assert r.xlen(s.trainer.stream) == 0  # both acknowledged and trimmed
    finally:
        trainer.stop()
        server.stop()
