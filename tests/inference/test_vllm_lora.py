"""LoRA adapters as weight versions: the real vLLM CPU server started with LoRA support loads a
verified PEFT adapter in place, and its greedy output matches transformers + peft."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from azr.common.checkpoints import save_model_checkpoint
from azr.common.model import prepare_default_model
from services.inference.engine import WeightLoadError
from services.inference.transformers_engine import TransformersEngine
from services.inference.vllm_engine import VLLMEngine
from tests.inference.helpers import corrupt, start_test_vllm

PROMPT = "<|im_start|>user\nName a prime number.<|im_end|>\n<|im_start|>assistant\n"
NEW_TOKENS = 12

_runner = asyncio.Runner()
run = _runner.run


def make_adapter(
    model_dir: Path, root: Path, version: int, seed: int = 0
) -> tuple[Path, list[int]]:
    """A rank-8 adapter with random (non-zero) A and B on every projection, saved the way the
    trainer saves LoRA versions; also its greedy continuation of PROMPT under transformers."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    config = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=[
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
        init_lora_weights=False,
    )
    model = get_peft_model(base, config).eval()
    ids = tokenizer(PROMPT, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(input_ids=ids, max_new_tokens=NEW_TOKENS, do_sample=False)
    folder = save_model_checkpoint(model, tokenizer, root, version)
    return folder, out[0, ids.shape[1] :].tolist()


@pytest.fixture(scope="module")
def model_dir() -> Path:
    return prepare_default_model()


@pytest.fixture(scope="module")
def adapter(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    return make_adapter(model_dir, tmp_path_factory.mktemp("lora"), 1)


@pytest.fixture(scope="module")
def engine(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMEngine]:
    log_path = tmp_path_factory.mktemp("vllm-lora") / "server.log"
    eng = start_test_vllm(model_dir, log_path, run, enable_lora=True)
    yield eng
    run(eng.close())
    _runner.close()


def greedy(engine: VLLMEngine) -> tuple[int, list[int]]:
    sample = run(engine.generate([PROMPT], temperature=0.0, max_tokens=NEW_TOKENS))[0][0]
    return sample.version, sample.completion_token_ids


@pytest.mark.slow
@pytest.mark.vllm
@pytest.mark.timeout(900)
def test_adapter_versions_load_in_place_match_peft_and_go_back(
    engine: VLLMEngine, model_dir: Path, adapter: tuple[Path, list[int]], tmp_path: Path
) -> None:
    folder, peft_tokens = adapter
    assert (folder / "adapter_config.json").is_file() and not (folder / "config.json").exists()
    version, base_tokens = greedy(engine)
    assert version == 0

    info = run(engine.load_weights(1, folder))
    assert info.version == 1 and info.checksum and info.path == str(folder.resolve())
    version, lora_tokens = greedy(engine)
    assert version == 1
    assert lora_tokens == peft_tokens[: len(lora_tokens)] and len(lora_tokens) >= 4
    assert lora_tokens != base_tokens[: len(lora_tokens)]

    # A corrupt adapter is refused by its manifest; the adapter version keeps serving.
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    corrupt(broken)
    with pytest.raises(WeightLoadError, match="verification"):
        run(engine.load_weights(2, broken))
    assert greedy(engine) == (1, lora_tokens)

    # A whole checkpoint (here the base model) replaces the adapter.
    run(engine.load_weights(3, model_dir))
    assert greedy(engine) == (3, base_tokens)


def test_transformers_engine_refuses_an_adapter_and_keeps_serving(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    engine = TransformersEngine(tiny_model_dir, device="cpu")
    asyncio.run(engine.start())
    with pytest.raises(WeightLoadError, match="LoRA adapter"):
        asyncio.run(engine.load_weights(1, folder))
    assert engine.version == 0
