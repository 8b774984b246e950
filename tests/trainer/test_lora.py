"""LoRA mode: versions are adapter folders over version 0 that peft (and vLLM) can load."""

from __future__ import annotations

import torch
from peft import PeftModel

from azr.common.checkpoints import list_versions, read_manifest, verify_checkpoint, version_dir
from azr.contracts.trainer import publish_reward_batch
from services.trainer.policy import load_model
from tests.trainer.conftest import MakeService
from tests.trainer.helpers import make_batch


def test_lora_versions_are_loadable_adapters(make_service: MakeService) -> None:
    svc, s = make_service(lora=True, lora_rank=4, lr=1e-2)
    publish_reward_batch(svc.redis, s, make_batch(batch_id="l1"))
    svc.poll_once(block_ms=100)
    root = s.checkpoint_dir
    v1 = version_dir(root, 1)
    verify_checkpoint(v1)
    assert read_manifest(v1)["kind"] == "lora"
    files = {p.name for p in v1.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= files
    assert "model.safetensors" not in files

    ids = torch.tensor([[5, 6, 7, 8, 9]])
    base = load_model(version_dir(root, 0), torch.device("cpu")).eval()
    with torch.no_grad():
        base_logits = base(ids).logits
    tuned = PeftModel.from_pretrained(base, v1).eval()
    with torch.no_grad():
        tuned_logits = tuned(ids).logits
    assert not torch.allclose(base_logits, tuned_logits)

    # A restart continues from the adapter of v1, not from fresh adapters.
    again, _ = make_service(settings=s)
    with torch.no_grad():
        restarted = again.model.eval()(ids).logits
    torch.testing.assert_close(restarted, tuned_logits)
    publish_reward_batch(again.redis, s, make_batch(batch_id="l2", seed=5))
    again.poll_once(block_ms=100)
    assert list_versions(root) == [0, 1, 2]
