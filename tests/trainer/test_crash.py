"""kill -9 of a real trainer process in the middle of an update: the restarted trainer resumes
from the last saved version and optimizer state, the unacknowledged batch is trained exactly once,
and no version is half-written or skipped."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import torch
from safetensors.torch import load_file

from azr.common.checkpoints import list_versions, read_manifest, verify_checkpoint, version_dir
from azr.contracts.trainer import publish_reward_batch
from services.trainer.loss import LossConfig
from services.trainer.policy import load_model, make_optimizer
from services.trainer.state import STATE_DIR, load_trainer_state
from services.trainer.update import TEST_SLEEP_ENV, Updater
from tests.trainer.helpers import make_batch, trainer_settings
from tests.trainer.process import TrainerProcess

pytestmark = pytest.mark.slow


@pytest.fixture
def processes() -> Iterator[list[TrainerProcess]]:
    started: list[TrainerProcess] = []
    yield started
    for p in started:
        p.stop()


def test_kill9_mid_update_resumes_exactly_once(
    tmp_path: Path, tiny_model_dir: Path, redis_url: str, processes: list[TrainerProcess]
) -> None:
    s = trainer_settings(tmp_path / "data", tiny_model_dir, redis_url, micro_batch_tokens=64)
    root = s.checkpoint_dir
    r = redis.Redis.from_url(redis_url)
    first, second = make_batch("first", seed=1), make_batch("second", seed=2)

    # A slow trainer: each micro-batch waits, so an update takes seconds and can be caught.
    slow = TrainerProcess(s, tmp_path / "trainer-1.log", **{TEST_SLEEP_ENV: "0.3"})
    processes.append(slow)
    slow.wait_ready()
    publish_reward_batch(r, s, first)
    slow.wait_for(lambda st: st["version"] == 1)
    publish_reward_batch(r, s, second)
    st = slow.wait_for(
        lambda st: st["phase"] == "updating" and (st["current"] or {}).get("micro_batch", 0) >= 2
    )
    assert st["current"]["batch_id"] == "second" and st["current"]["micro_batches"] > 2
    slow.kill9()

    # Nothing of the interrupted update reached the disk; the entry is still pending.
    assert list_versions(root) == [0, 1]
    assert r.xinfo_groups(s.trainer.stream)[0]["pending"] == 1
    assert sorted(p.name for p in (root / STATE_DIR).iterdir()) == ["v000001"]

    # What an uninterrupted trainer would have produced: v1 + its optimizer state + `second`.
    expected = load_model(version_dir(root, 1), torch.device("cpu"))
    optimizer = make_optimizer(expected, s.trainer, torch.device("cpu"))
    saved = load_trainer_state(root, 1)
    assert saved is not None
    optimizer.load_state_dict(saved[1])
    cfg = s.trainer
    Updater(
        expected,
        optimizer,
        LossConfig(cfg.clip_ratio, cfg.entropy_coef, cfg.kl_coef, cfg.tis_cap),
        cfg.micro_batch_tokens,
        cfg.grad_clip,
        torch.device("cpu"),
    ).step(second)

    again = TrainerProcess(s, tmp_path / "trainer-2.log")
    processes.append(again)
    st = again.wait_for(lambda st: st["version"] == 2 and st["phase"] == "idle")
    assert st["counts"] == {"trained": 1, "duplicate": 0, "dead_letter": 0, "failed": 0}
    again.stop()

    assert list_versions(root) == [0, 1, 2]
    for v in (0, 1, 2):
        verify_checkpoint(version_dir(root, v))
    assert read_manifest(version_dir(root, 2))["batch_id"] == "second"
    state = load_trainer_state(root, 2)
    assert state is not None
    assert state[0].batches == {"first": 1, "second": 2} and state[0].updates == 2
    assert r.xinfo_groups(s.trainer.stream)[0]["pending"] == 0
    assert not list(root.glob(".tmp-*"))
    announced = [
        json.loads(f[b"announcement"])["version"] for _, f in r.xrange(s.trainer.versions_stream)
    ]
    assert announced == [0, 1, 2]

    got = load_file(str(version_dir(root, 2) / "model.safetensors"))
    for name, param in expected.state_dict().items():
        torch.testing.assert_close(got[name], param, rtol=1e-4, atol=1e-6, msg=name)
    r.close()
