"""The trainer's model on N ranks: FSDP2 (`fully_shard`), its trainer state as a sharded
torch.distributed.checkpoint, and the consolidated safetensors version inference loads.

Layout of a sharded trainer state (beside the weights, as in state.py):
``trainer-state/v000012/{dcp/, state.json, manifest.json}``; ``dcp/`` holds the model and the
AdamW moments, one file per rank plus the metadata, and can be read back by any world size.
The order that makes a crash harmless is the single-process one: every rank writes its shard
into one temporary folder, rank 0 renames it into place, then rank 0 writes the weights.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)
from torch.distributed.checkpoint.state_dict_loader import load as dcp_load
from torch.distributed.checkpoint.state_dict_saver import save as dcp_save
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from azr.common.checkpoints import (
    ChecksumMismatch,
    publish_dir,
    verify_checkpoint,
    version_dir,
    write_manifest,
)
from services.trainer.distributed import DistContext, barrier, broadcast
from services.trainer.packing import MicroBatch
from services.trainer.policy import load_model, response_token_stats
from services.trainer.state import STATE_DIR, STATE_FILE, TrainerState, state_dir

log = logging.getLogger(__name__)

DCP_DIR = "dcp"


class ResponseStats(nn.Module):
    """The FSDP root: the embedding, final norm and head are gathered by the root's forward
    hook, which `response_token_stats` would bypass (it calls the decoder and the head apart).
    Returns a tuple so FSDP's backward hooks find the tensors."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def get_input_embeddings(self) -> Any:
        return self.model.get_input_embeddings()

    def forward(
        self,
        mb: MicroBatch,
        entropy_grad: bool = True,
        with_entropy: bool = True,
        temperature: torch.Tensor | float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        s = response_token_stats(
            self.model,
            mb,
            entropy_grad=entropy_grad,
            with_entropy=with_entropy,
            temperature=temperature,
        )
        return s.logp, s.entropy


def enable_activation_checkpointing(model: Any) -> None:
    # Non-reentrant: the variant that composes with FSDP2's hooks.
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def shard(model: Any, mesh: Any, bf16: bool) -> ResponseStats:
    """One FSDP group per decoder layer (so only one layer is gathered at a time), the rest in
    the root; fp32 master weights and optimizer state, bf16 compute on CUDA when asked. The
    shards move to the mesh's device; the full copy stays where it was loaded (host memory)."""
    mp = (
        MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        if bf16
        else MixedPrecisionPolicy()
    )
    root = ResponseStats(model)
    for layer in model.get_decoder().layers:
        fully_shard(layer, mesh=mesh, mp_policy=mp)
    fully_shard(root, mesh=mesh, mp_policy=mp)
    return root


def load_sharded(
    path: Path, device: torch.device, ctx: DistContext, *, bf16: bool, checkpointing: bool
) -> ResponseStats:
    """Each rank reads the full fp32 model and keeps its shard. Ranks take turns so the host
    holds one full copy at a time (a 7B model is 28 GB in fp32)."""
    mesh = init_device_mesh(device.type, (ctx.world_size,))  # collective: before the turns
    root: ResponseStats | None = None
    for turn in range(ctx.world_size):
        if turn == ctx.rank:
            model = load_model(path, torch.device("cpu"))
            if checkpointing:
                enable_activation_checkpointing(model)
            root = shard(model, mesh, bf16)
            del model
        barrier(ctx)
    assert root is not None
    return root


# ---------------------------------------------------------------------- trainer state


def save_sharded_state(
    root_dir: Path,
    version: int,
    state: TrainerState,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    ctx: DistContext,
) -> None:
    """Collective: every rank writes its shard of the model and of the optimizer moments."""
    parent = Path(root_dir) / STATE_DIR
    final = state_dir(root_dir, version)
    tmp_name = None
    if ctx.is_main:
        parent.mkdir(parents=True, exist_ok=True)
        tmp_name = tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=parent)
    tmp = Path(broadcast(tmp_name, ctx))
    try:
        model_sd, optim_sd = get_state_dict(model, optimizer)
        dcp_save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(tmp / DCP_DIR))
        barrier(ctx)
        if ctx.is_main:
            (tmp / STATE_FILE).write_text(json.dumps(state.to_json(), indent=1, sort_keys=True))
            write_manifest(tmp, version, {"kind": "trainer-state", "format": "dcp"})
            publish_dir(tmp, final)
        barrier(ctx)
    except BaseException:
        if ctx.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_sharded_state(root_dir: Path, version: int) -> TrainerState | None:
    """The verified state.json of a sharded trainer state, or None when absent or damaged."""
    directory = state_dir(root_dir, version)
    if not (directory / DCP_DIR).is_dir():
        return None
    try:
        verify_checkpoint(directory)
    except ChecksumMismatch as exc:
        log.error("trainer state %d is damaged: %s", version, exc)
        return None
    return TrainerState.from_json(json.loads((directory / STATE_FILE).read_text()))


def load_sharded_state(
    root_dir: Path, version: int, model: nn.Module, optimizer: torch.optim.Optimizer
) -> None:
    """Collective: read the model and the optimizer moments back, resharded to this world."""
    model_sd, optim_sd = get_state_dict(model, optimizer)
    # Loaded in place into the tensors of these two dicts.
    dcp_load(
        {"model": model_sd, "optim": optim_sd},
        checkpoint_id=str(state_dir(root_dir, version) / DCP_DIR),
    )
    set_state_dict(model, optimizer, model_state_dict=model_sd, optim_state_dict=optim_sd)


# ---------------------------------------------------------------------- consolidated weights


def full_state_dict(root: ResponseStats) -> dict[str, torch.Tensor]:
    """Collective: the HF model's whole fp32 state dict on rank 0's CPU (empty elsewhere)."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    full = get_model_state_dict(root, options=options)
    prefix = "model."
    return {k.removeprefix(prefix): v for k, v in full.items() if isinstance(v, torch.Tensor)}


def publish_consolidated(
    state_dict: dict[str, torch.Tensor],
    config: Any,
    generation_config: Any,
    tokenizer: Any,
    root_dir: Path,
    version: int,
    extra: dict[str, Any],
) -> Path:
    """Rank 0: the version folder inference reads, in `save_pretrained`'s format (sharded
    safetensors with an index past 5 GB), written to a temporary folder and renamed whole."""
    from huggingface_hub import save_torch_state_dict

    root_dir = Path(root_dir)
    final = version_dir(root_dir, version)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=root_dir))
    try:
        config = copy.deepcopy(config)
        weights = dict(state_dict)
        if getattr(config, "tie_word_embeddings", False):
            # Written untied, as save_model_checkpoint does (vLLM's reload needs the head).
            embed = next(v for k, v in weights.items() if k.endswith("embed_tokens.weight"))
            weights["lm_head.weight"] = embed.clone()
            config.tie_word_embeddings = False
        t0 = time.perf_counter()
        save_torch_state_dict(weights, tmp, max_shard_size="5GB")
        config.save_pretrained(tmp)
        if generation_config is not None:
            generation_config.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        write_manifest(tmp, version, extra)
        publish_dir(tmp, final)
        log.info("published version %d in %.2f s", version, time.perf_counter() - t0)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
