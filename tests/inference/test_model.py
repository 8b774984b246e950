"""The tiny test model, the tokenizer cache and the converted default model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from azr.common.checkpoints import verify_checkpoint
from azr.common.model import (
    GGUF_NAME,
    build_tiny_model,
    gguf_path,
    prepare_default_model,
    resolve_model,
    tokenizer_dir,
)
from azr.settings import Settings


def test_tiny_model_is_a_small_untied_llama_with_the_smollm2_tokenizer(
    tiny_model_dir: Path,
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["num_hidden_layers"] == 2 and config["hidden_size"] == 64
    assert config["tie_word_embeddings"] is False
    verify_checkpoint(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    assert (tok.bos_token_id, tok.eos_token_id, len(tok)) == (1, 2, 49152)
    source = "def f(a):\n\tif a:\n\t\treturn 'x'\n"
    assert tok.decode(tok(source)["input_ids"]) == source
    assert "<|im_start|>assistant" in tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    assert sum(p.numel() for p in model.parameters()) < 10_000_000


def test_tiny_model_is_seeded(tmp_path: Path, tiny_model_dir: Path) -> None:
    same = build_tiny_model(tmp_path / "a")
    other = build_tiny_model(tmp_path / "b", seed=1)
    weights = "model.safetensors"
    assert (same / weights).read_bytes() == (tiny_model_dir / weights).read_bytes()
    assert (other / weights).read_bytes() != (tiny_model_dir / weights).read_bytes()


def test_tokenizer_cache_is_reused_and_rebuilt_when_stale(tmp_path: Path) -> None:
    first = tokenizer_dir(tmp_path)
    stamp = first / "gguf.sha256"
    mtime = stamp.stat().st_mtime_ns
    assert tokenizer_dir(tmp_path) == first and stamp.stat().st_mtime_ns == mtime
    stamp.write_text("stale\n")
    assert tokenizer_dir(tmp_path) == first
    assert stamp.read_text().strip() != "stale" and (first / "tokenizer.json").is_file()


def test_resolve_model_prefers_the_configured_directory(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    settings = Settings(inference={"model": str(tiny_model_dir)})  # type: ignore[arg-type]
    assert resolve_model(settings) == tiny_model_dir
    with pytest.raises(FileNotFoundError, match="not an HF model directory"):
        resolve_model(Settings(inference={"model": str(tmp_path)}))  # type: ignore[arg-type]


@pytest.mark.slow
def test_default_model_matches_the_gguf() -> None:
    """The converted safetensors model computes what the GGUF (de-quantised) model computes."""
    import torch
    from transformers import AutoModelForCausalLM

    converted = prepare_default_model()
    verify_checkpoint(converted)
    config = json.loads((converted / "config.json").read_text())
    assert config["tie_word_embeddings"] is False and config["num_hidden_layers"] == 30
    path = gguf_path()
    assert path.name == GGUF_NAME
    ids = torch.tensor([[1, 9690, 198, 2683, 253, 1789, 30]])
    with torch.no_grad():
        ours = AutoModelForCausalLM.from_pretrained(str(converted), dtype=torch.float32)(ids).logits
        theirs = AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=torch.float32
        )(ids).logits
    assert torch.allclose(ours, theirs, atol=1e-4)
