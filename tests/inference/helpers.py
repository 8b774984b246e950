"""Helpers for the inference tests: checkpoints derived from a model directory."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from azr.common.checkpoints import save_model_checkpoint


def perturbed_checkpoint(
    source: Path, root: Path, version: int, *, scale: float = 0.5, seed: int = 0
) -> Path:
    """`source`'s weights with Gaussian noise (scale x each matrix's std) as checkpoint `version`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(source), dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(source))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:
                param.add_(torch.randn(param.shape, generator=gen) * param.std() * scale)
    return save_model_checkpoint(model, tok, root, version)


def corrupt(directory: Path) -> None:
    """Flip bytes in the middle of the weights file without touching the manifest."""
    weights = sorted(directory.glob("*.safetensors"))[0]
    data = bytearray(weights.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 16] = bytes(255 - b for b in data[mid : mid + 16])
    weights.write_bytes(bytes(data))


def manifest_version(directory: Path) -> int:
    return int(json.loads((directory / "manifest.json").read_text())["version"])


def start_test_vllm(
    model_dir: Path, log_path: Path, run: Callable[[Awaitable[Any]], Any], **options: Any
) -> Any:
    """The tests' vLLM CPU server: fp32 (log-probs comparable with transformers), eager, a small
    KV cache; started in the caller's event loop, printing the server log if it fails to start."""
    from services.inference.vllm_engine import VLLMEngine

    engine = VLLMEngine(
        model_dir,
        dtype="float32",
        max_model_len=1024,
        enforce_eager=True,
        kv_cache_gib=1,
        log_path=log_path,
        startup_timeout_s=600,
        **options,
    )
    try:
        run(engine.start())
    except Exception:
        print(log_path.read_text()[-4000:] if log_path.exists() else "no log")
        raise
    return engine
