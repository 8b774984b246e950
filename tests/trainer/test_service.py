"""The trainer's consumer loop with a real Redis and the tiny model: one update writes v+1,
malformed batches are dead-lettered, redelivery is idempotent, retention keeps what it should."""

from __future__ import annotations

import json

import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import load_file

from azr.common.checkpoints import list_versions, read_manifest, verify_checkpoint, version_dir
from azr.contracts.trainer import publish_reward_batch
from services.trainer.app import create_app
from services.trainer.state import STATE_DIR, load_trainer_state, versions_to_delete
from tests.trainer.conftest import MakeService
from tests.trainer.helpers import make_batch


def weights(directory) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    return load_file(str(directory / "model.safetensors"))


def test_one_update_writes_next_version(make_service: MakeService) -> None:
    svc, s = make_service()
    root = s.checkpoint_dir
    assert list_versions(root) == [0]

    b = make_batch(batch_id="step-1")
    publish_reward_batch(svc.redis, s, b)
    assert svc.poll_once(block_ms=100) == 1

    assert list_versions(root) == [0, 1]
    verify_checkpoint(version_dir(root, 1))
    manifest = read_manifest(version_dir(root, 1))
    assert manifest["batch_id"] == "step-1" and manifest["kind"] == "full"
    before, after = weights(version_dir(root, 0)), weights(version_dir(root, 1))
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) == len(before), f"unchanged tensors: {set(before) - set(changed)}"

    # Trainer state of v1 sits beside it; the entry is acknowledged; the version announced.
    loaded = load_trainer_state(root, 1)
    assert loaded is not None and loaded[0].batches == {"step-1": 1}
    assert loaded[1]["state"], "optimizer moments were saved"
    groups = svc.redis.xinfo_groups(s.trainer.stream)
    assert groups[0]["pending"] == 0
    latest = json.loads(svc.redis.get(s.trainer.latest_key))
    assert latest["version"] == 1 and latest["batch_id"] == "step-1"
    assert svc.redis.hget(s.trainer.batch_versions_key, "step-1") == b"1"
    versions = [
        json.loads(f[b"announcement"])["version"]
        for _, f in svc.redis.xrange(s.trainer.versions_stream)
    ]
    assert versions == [0, 1]

    m = svc.status()["last_step"]["metrics"]
    for key in ("loss", "entropy", "grad_norm", "mismatch_kl", "tokens_per_s", "step_time_s"):
        assert key in m
    assert m["grad_norm"] > 0 and m["entropy"] > 0
    assert set(svc.status()["last_step"]["groups"]) == {s.group for s in b.samples}


def test_malformed_entries_are_dead_lettered_and_do_not_block(make_service: MakeService) -> None:
    svc, s = make_service()
    r = svc.redis
    r.xadd(s.trainer.stream, {"batch": "{not json"})
    r.xadd(s.trainer.stream, {"something": "else"})
    bad = make_batch(batch_id="bad-token").model_dump()
    bad["samples"][0]["completion_token_ids"] = [10**7, 3]
    bad["samples"][0]["sampling_logprobs"] = None
    r.xadd(s.trainer.stream, {"batch": json.dumps(bad)})
    missing = make_batch().model_dump()
    del missing["samples"][2]["reward"]
    r.xadd(s.trainer.stream, {"batch": json.dumps(missing)})
    publish_reward_batch(r, s, make_batch(batch_id="good"))

    for _ in range(5):
        svc.poll_once(block_ms=100)

    dead = [
        {k.decode(): v.decode() for k, v in f.items()}
        for _, f in r.xrange(s.trainer.dead_letter_stream)
    ]
    reasons = [d["reason"] for d in dead]
    assert len(reasons) == 4, reasons
    assert "invalid reward batch" in reasons[0]
    assert "no 'batch' field" in reasons[1]
    assert "vocabulary size" in reasons[2]
    assert "samples.2.reward: Field required" in reasons[3]
    assert dead[0]["payload"] == "{not json"
    # The good batch after them was trained on, and nothing is left pending.
    assert list_versions(s.checkpoint_dir) == [0, 1]
    assert r.xinfo_groups(s.trainer.stream)[0]["pending"] == 0
    assert svc.status()["counts"]["dead_letter"] == 4


def test_redelivery_after_save_is_acknowledged_without_second_update(
    make_service: MakeService,
) -> None:
    svc, s = make_service()
    publish_reward_batch(svc.redis, s, make_batch(batch_id="once"))

    # Fault injection: die after the save, before announcing and acknowledging.
    def crash(version: int) -> None:
        raise RuntimeError("simulated crash after save")

    svc.announce = crash  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        svc.poll_once(block_ms=100)
    assert list_versions(s.checkpoint_dir) == [0, 1]
    assert svc.redis.xinfo_groups(s.trainer.stream)[0]["pending"] == 1
    v1 = weights(version_dir(s.checkpoint_dir, 1))

    # A restarted trainer announces v1, re-reads its pending entry and only acknowledges it;
    # the gateway publishing the same batch again is acknowledged too.
    again, _ = make_service(settings=s)
    assert json.loads(again.redis.get(s.trainer.latest_key))["version"] == 1
    publish_reward_batch(again.redis, s, make_batch(batch_id="once"))
    assert again.poll_once(block_ms=100) == 1
    assert again.poll_once(block_ms=100) == 1
    assert list_versions(s.checkpoint_dir) == [0, 1]
    assert again.redis.xinfo_groups(s.trainer.stream)[0]["pending"] == 0
    assert again.status()["counts"]["duplicate"] == 2
    after = weights(version_dir(s.checkpoint_dir, 1))
    assert all(torch.equal(v1[k], after[k]) for k in v1)

    # The next new batch continues at v2 from the same optimizer state.
    publish_reward_batch(again.redis, s, make_batch(batch_id="next", seed=3))
    again.poll_once(block_ms=100)
    assert list_versions(s.checkpoint_dir) == [0, 1, 2]
    state = load_trainer_state(s.checkpoint_dir, 2)
    assert state is not None and state[0].batches == {"once": 1, "next": 2}
    assert state[0].updates == 2


def test_retention_policy() -> None:
    assert versions_to_delete(list(range(12)), keep_last=3, keep_every=5) == [1, 2, 3, 4, 6, 7, 8]
    assert versions_to_delete([0, 1, 2], keep_last=0, keep_every=0) == [1]
    assert versions_to_delete([], 3, 10) == []


def test_retention_on_disk(make_service: MakeService) -> None:
    svc, s = make_service(keep_last=1, keep_every=2)
    for i in range(4):
        publish_reward_batch(svc.redis, s, make_batch(batch_id=f"r{i}", seed=i, per_group=1))
        svc.poll_once(block_ms=100)
    root = s.checkpoint_dir
    assert list_versions(root) == [0, 2, 4]
    assert sorted(p.name for p in (root / STATE_DIR).iterdir()) == ["v000004"]
    assert not list(root.glob(".*"))
    for v in list_versions(root):
        verify_checkpoint(version_dir(root, v))


def test_http_status(make_service: MakeService) -> None:
    svc, s = make_service()
    publish_reward_batch(svc.redis, s, make_batch(batch_id="a"))
    publish_reward_batch(svc.redis, s, make_batch(batch_id="b", seed=1))
    client = TestClient(create_app(svc))
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    body = client.get("/v1/status").json()
    assert body["version"] == 0 and body["backlog"]["total"] == 2
    svc.poll_once(block_ms=100)
    body = client.get("/v1/status").json()
    assert body["version"] == 1 and body["backlog"] == {"pending": 0, "undelivered": 1, "total": 1}
    assert body["last_step"]["batch_id"] == "a"
    text = client.get("/metrics").text
    assert 'azr_trainer_step_metric{name="grad_norm"}' in text
    assert 'azr_trainer_group_metric{group="deduction/solve",name="advantage_std"}' in text


def test_tied_embeddings_stay_tied(make_service: MakeService, tiny_model_dir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """SmolLM2 ties its head to the input embedding. Checkpoints are written untied (for vLLM);
    the trainer keeps training the one shared matrix and re-ties it when it reloads."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(tiny_model_dir)
    config.tie_word_embeddings = True
    tied_dir = tmp_path / "tied"
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(tied_dir)
    svc, s = make_service(model=str(tied_dir))
    emb = svc.model.get_input_embeddings().weight
    assert svc.model.get_output_embeddings().weight is emb
    publish_reward_batch(svc.redis, s, make_batch(batch_id="t1"))
    svc.poll_once(block_ms=100)
    assert svc.model.get_output_embeddings().weight is svc.model.get_input_embeddings().weight
    saved = weights(version_dir(s.checkpoint_dir, 1))
    assert torch.equal(saved["lm_head.weight"], saved["model.embed_tokens.weight"])
    base = weights(version_dir(s.checkpoint_dir, 0))
    assert not torch.equal(saved["model.embed_tokens.weight"], base["model.embed_tokens.weight"])
    again, _ = make_service(settings=s)
    assert again.model.get_output_embeddings().weight is again.model.get_input_embeddings().weight
