"""The trainer on two ranks (torchrun, FSDP2 over gloo on CPU, the tiny model): the same losses
and weights as one process over the same batches, and a kill -9 of one rank in the middle of a
step loses no batch and applies none twice. One job covers both (a torchrun start costs tens of
seconds on two cores)."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import torch
from safetensors.torch import load_file

from azr.common.checkpoints import list_versions, read_manifest, verify_checkpoint, version_dir
from azr.contracts.trainer import RewardBatch, publish_reward_batch
from azr.settings import Settings
from services.trainer.loss import LossConfig
from services.trainer.policy import load_model, make_optimizer
from services.trainer.sharded import DCP_DIR, read_sharded_state
from services.trainer.state import STATE_DIR, state_dir
from services.trainer.update import TEST_SLEEP_ENV, StepResult, Updater, rank_share
from tests.trainer.helpers import make_batch, trainer_settings
from tests.trainer.process import TrainerProcess


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("n_micro", [0, 1, 2, 5, 6])
def test_rank_share_gives_each_micro_batch_to_one_rank(world: int, n_micro: int) -> None:
    plan = [[i] for i in range(n_micro)]
    shares = [rank_share(plan, r, world) for r in range(world)]
    counted = sorted(idx[0] for share in shares for idx, c in share if c)
    assert counted == list(range(n_micro))  # every micro-batch counted exactly once
    assert len({len(share) for share in shares}) == 1  # the same number of passes per rank


def reference_steps(
    settings: Settings, batches: list[RewardBatch]
) -> tuple[Updater, list[StepResult]]:
    """One process, from version 0, over the same batches: what the two ranks must reproduce."""
    cfg = settings.trainer
    model = load_model(version_dir(settings.checkpoint_dir, 0), torch.device("cpu"))
    updater = Updater(
        model,
        make_optimizer(model, cfg, torch.device("cpu")),
        LossConfig(cfg.clip_ratio, cfg.entropy_coef, cfg.kl_coef, cfg.tis_cap),
        cfg.micro_batch_tokens,
        cfg.grad_clip,
        torch.device("cpu"),
    )
    return updater, [updater.step(b) for b in batches]


def assert_weights(settings: Settings, version: int, updater: Updater) -> None:
    got = load_file(str(version_dir(settings.checkpoint_dir, version) / "model.safetensors"))
    expected = updater.model.state_dict()
    assert set(got) == set(expected)
    for name, param in expected.items():
        torch.testing.assert_close(got[name], param, rtol=1e-4, atol=1e-5, msg=name)


@pytest.fixture
def processes() -> Iterator[list[TrainerProcess]]:
    started: list[TrainerProcess] = []
    yield started
    for p in started:
        p.stop()


@pytest.mark.slow
def test_two_ranks_match_one_process_and_survive_kill9_of_a_rank(
    tmp_path: Path, tiny_model_dir: Path, redis_url: str, processes: list[TrainerProcess]
) -> None:
    s = trainer_settings(tmp_path / "data", tiny_model_dir, redis_url, micro_batch_tokens=64)
    root = s.checkpoint_dir
    r = redis.Redis.from_url(redis_url)
    first, second = make_batch("first", seed=1), make_batch("second", seed=2)

    # Each micro-batch waits, so a step takes seconds; torchrun may restart the job once.
    # 64 tokens per micro-batch: several micro-batches, so each rank has its share.
    job = TrainerProcess(
        s, tmp_path / "torchrun.log", ranks=2, max_restarts=1, **{TEST_SLEEP_ENV: "0.3"}
    )
    processes.append(job)
    job.wait_ready()
    publish_reward_batch(r, s, first)
    job.wait_for(lambda st: st["version"] == 1 and st["phase"] == "idle")
    publish_reward_batch(r, s, second)
    st = job.wait_for(
        lambda st: st["phase"] == "updating" and (st["current"] or {}).get("micro_batch", 0) >= 2
    )
    assert st["current"]["batch_id"] == "second"
    # Nothing of the interrupted step is on disk yet: the sharded state is version 1's.
    assert list_versions(root) == [0, 1]
    killed = job.rank_pid(1)
    os.kill(killed, signal.SIGKILL)

    # torchrun tears the job down and starts both ranks again; they resume from version 1.
    st = job.wait_for(lambda st: st["version"] == 2 and st["phase"] == "idle", timeout_s=240)
    assert st["counts"] == {"trained": 1, "duplicate": 0, "dead_letter": 0, "failed": 0}
    assert job.rank_pid(1) != killed  # a restarted job, not a survivor
    job.stop()

    assert list_versions(root) == [0, 1, 2]
    for v in (0, 1, 2):
        verify_checkpoint(version_dir(root, v))
    assert read_manifest(version_dir(root, 2))["batch_id"] == "second"
    state = read_sharded_state(root, 2)
    assert state is not None
    assert state.batches == {"first": 1, "second": 2} and state.updates == 2
    assert sorted(p.name for p in (root / STATE_DIR).iterdir()) == ["v000002"]
    assert r.xinfo_groups(s.trainer.stream)[0]["pending"] == 0
    announced = [
        json.loads(f[b"announcement"])["version"] for _, f in r.xrange(s.trainer.versions_stream)
    ]
    assert announced == [0, 1, 2]
    # Neither lost nor applied twice: the losses and weights of one process over first, second
    # (the AdamW moments of step 1 came back from the sharded checkpoint).
    updater, results = reference_steps(s, [first, second])
    for v, result in enumerate(results, start=1):
        manifest = read_manifest(version_dir(root, v))
        for key in ("loss", "pg_loss", "entropy", "grad_norm", "micro_batches"):
            assert manifest["metrics"][key] == pytest.approx(result.metrics[key], rel=1e-4), key
    assert_weights(s, 2, updater)
    # One shard file per rank plus the metadata.
    shards = sorted(p.name for p in (state_dir(root, 2) / DCP_DIR).iterdir())
    assert [n for n in shards if n.endswith(".distcp")] == ["__0_0.distcp", "__1_0.distcp"]
    r.close()


def test_world_of_one_matches_plain_and_restores_its_sharded_state(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """In-process, fast: FSDP2 over a gloo group of one (fsdp=on), with activation checkpointing,
    steps like the plain trainer; its DCP state read back into a fresh model continues the same
    trajectory (the AdamW moments came back)."""
    from azr.settings import TrainerSettings
    from services.trainer.distributed import init_distributed, shutdown
    from services.trainer.sharded import (
        full_state_dict,
        load_sharded,
        load_sharded_state,
        save_sharded_state,
    )
    from services.trainer.state import TrainerState

    cpu = torch.device("cpu")
    cfg = TrainerSettings(fsdp="on", lr=1e-3, micro_batch_tokens=64)
    loss_cfg = LossConfig(cfg.clip_ratio, cfg.entropy_coef, cfg.kl_coef, cfg.tis_cap)
    first, second = make_batch("a", seed=3), make_batch("b", seed=4)
    plain_model = load_model(tiny_model_dir, cpu)
    plain = Updater(plain_model, make_optimizer(plain_model, cfg, cpu), loss_cfg, 64, 1.0, cpu)

    ctx = init_distributed(cfg, cpu)
    try:
        assert ctx.sharded and ctx.world_size == 1

        def sharded_updater() -> Updater:
            root = load_sharded(tiny_model_dir, cpu, ctx, bf16=False, checkpointing=True)
            opt = make_optimizer(root, cfg, cpu)
            return Updater(root, opt, loss_cfg, 64, 1.0, cpu, None, dist=ctx, forward=root)

        one = sharded_updater()
        got, want = one.step(first).metrics, plain.step(first).metrics
        for key in ("loss", "entropy", "grad_norm"):
            assert got[key] == pytest.approx(want[key], rel=1e-5), key
        save_sharded_state(tmp_path, 1, TrainerState(version=1), one.model, one.optimizer, ctx)

        again = sharded_updater()  # the base weights, then the saved state on top
        load_sharded_state(tmp_path, 1, again.model, again.optimizer)
        again.step(second)
        plain.step(second)
        weights = full_state_dict(again.model)
        for name, param in plain_model.state_dict().items():
            torch.testing.assert_close(weights[name], param, rtol=1e-4, atol=1e-6, msg=name)
        assert read_sharded_state(tmp_path, 1) == TrainerState(version=1)
    finally:
        shutdown(ctx)
