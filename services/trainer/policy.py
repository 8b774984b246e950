"""The trained model: loading (full or LoRA), device and precision, and per-token log-probs.

CUDA with bf16 autocast when present, CPU fp32 otherwise; master weights stay fp32 either way
(pure bf16 weights make AdamW's small updates round away, model-notes.md).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from azr.settings import TrainerSettings
from services.trainer.packing import MicroBatch

log = logging.getLogger(__name__)


def pick_device(setting: str) -> torch.device:
    if setting == "cuda" or (setting == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def autocast_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    if setting == "bf16" or (setting == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def embeddings_tied(model: Any) -> bool:
    inp, out = model.get_input_embeddings(), model.get_output_embeddings()
    return out is not None and out.weight is inp.weight


def retie_if_equal(model: Any) -> bool:
    """Checkpoints are written untied (see azr.common.checkpoints); a model whose head equals its
    input embedding was tied when trained, so tie it again to train exactly one matrix."""
    inp, out = model.get_input_embeddings(), model.get_output_embeddings()
    if out is None or out.weight is inp.weight:
        return out is not None
    if out.weight.shape == inp.weight.shape and torch.equal(out.weight, inp.weight):
        out.weight = inp.weight
        model.config.tie_word_embeddings = True
        return True
    return False


@contextlib.contextmanager
def untied_for_save(model: Any) -> Iterator[None]:
    """`save_model_checkpoint` unties the head in place; put the shared parameter back after,
    so the optimizer keeps training the one tied matrix it knows about."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    tied = embeddings_tied(base)
    shared = base.get_input_embeddings().weight
    try:
        yield
    finally:
        if tied:
            base.get_output_embeddings().weight = shared
            base.config.tie_word_embeddings = True


def load_model(path: Path, device: torch.device) -> Any:
    from transformers import AutoModelForCausalLM

    model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    retie_if_equal(model)
    return model.to(device)


def load_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except Exception as exc:  # a bare weights folder has no tokenizer; saving works without it
        log.warning("no tokenizer in %s (%s)", path, exc)
        return None


def add_lora(model: Any, cfg: TrainerSettings, adapter_dir: Path | None = None) -> Any:
    """Wrap with fresh LoRA adapters, or with the saved ones of `adapter_dir` (resume)."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if adapter_dir is not None:
        return PeftModel.from_pretrained(model, adapter_dir, is_trainable=True)
    config = LoraConfig(
        r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, target_modules="all-linear", lora_dropout=0.0
    )
    return get_peft_model(model, config)


def make_optimizer(model: Any, cfg: TrainerSettings, device: torch.device) -> torch.optim.AdamW:
    """AdamW over the trainable parameters (all of them, or the LoRA adapters): the fused kernel
    on CUDA, the multi-tensor one on CPU (about 2x the default per-tensor loop there)."""
    params = [p for p in model.parameters() if p.requires_grad]
    impl = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.AdamW(
        params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, **impl
    )


@dataclass
class TokenStats:
    logp: Tensor  # [T] log-prob of each response token
    entropy: Tensor | None  # [T] entropy of the distribution it was drawn from


def response_token_stats(
    model: Any,
    mb: MicroBatch,
    entropy_grad: bool = True,
    with_entropy: bool = True,
    temperature: Tensor | float = 1.0,  # scalar, or [T] one per trained token
) -> TokenStats:
    """Log-probs (and entropies) of the micro-batch's completion tokens under the distribution
    they were sampled from: logits / T before the softmax, T being each sample's sampling
    temperature (otherwise the PPO ratio and the importance weights compare the sampler's
    tempered distribution with the untempered one whenever T != 1).

    The LM head runs on the predicting positions alone: prompts can be long, and a vocabulary of
    50k+ makes full-sequence logits the largest tensor of the step.
    """
    decoder = model.get_decoder()
    head = model.get_output_embeddings()
    hidden = decoder(
        input_ids=mb.input_ids, attention_mask=mb.attention_mask, position_ids=mb.position_ids
    ).last_hidden_state
    h = hidden[mb.predict_rows, mb.predict_cols]
    logits = head(h).float()
    if isinstance(temperature, Tensor):
        logits = logits / temperature.to(logits.device, logits.dtype).unsqueeze(-1)
    elif temperature != 1.0:
        logits = logits / temperature
    logz = torch.logsumexp(logits, dim=-1)
    logp = logits.gather(-1, mb.targets.unsqueeze(-1)).squeeze(-1) - logz
    entropy = None
    if with_entropy:
        # Without an entropy bonus it is only reported: keep it out of the autograd graph.
        with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
            probs = torch.softmax(logits, dim=-1)
            entropy = logz - (probs * logits).sum(-1)
    return TokenStats(logp=logp, entropy=entropy)
