"""Which rank this trainer process is, and the few collectives the consumer loop needs.

`torchrun` sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT. Without them the
trainer is the plain single-process one (world size 1, no process group), unless `fsdp=on` asks
for a sharded world of one (same code path as N ranks, for measuring it).
"""

from __future__ import annotations

import datetime
import os
import socket
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch._C._distributed_c10d import PrefixStore, Store, TCPStore

from azr.settings import TrainerSettings


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    sharded: bool = False  # FSDP2 + torch.distributed.checkpoint; False: today's trainer

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _attempt_store(world: int, timeout: datetime.timedelta) -> Store:
    """torchrun's store outlives a restart of the ranks; keys of the previous attempt (e.g. the
    gloo address of a rank that was killed) would be read by the new ranks. One prefix per
    attempt (TORCHELASTIC_RESTART_COUNT) keeps every attempt's process group apart."""
    rank = int(os.environ.get("RANK", "0"))
    agent_hosts_it = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    base = TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        world_size=world,
        is_master=rank == 0 and not agent_hosts_it,
        timeout=timeout,
    )
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return PrefixStore(f"azr-trainer/attempt-{attempt}", base)


def world_from_env() -> tuple[int, int, int]:
    return (
        int(os.environ.get("RANK", "0")),
        int(os.environ.get("WORLD_SIZE", "1")),
        int(os.environ.get("LOCAL_RANK", "0")),
    )


def init_distributed(cfg: TrainerSettings, device: torch.device) -> DistContext:
    """Join the process group when sharding; NCCL on CUDA, gloo on CPU."""
    rank, world, local = world_from_env()
    sharded = cfg.fsdp == "on" or (cfg.fsdp == "auto" and world > 1)
    if world > 1 and not sharded:
        raise ValueError("the trainer was launched on several ranks with fsdp=off")
    if not sharded:
        return DistContext()
    if cfg.lora:
        raise ValueError("LoRA training is single-process; set fsdp=off and run one rank")
    if not dist.is_initialized():
        timeout = datetime.timedelta(seconds=cfg.dist_timeout_s)
        backend = "nccl" if device.type == "cuda" else "gloo"
        if "MASTER_ADDR" in os.environ:
            dist.init_process_group(
                backend,
                store=_attempt_store(world, timeout),
                rank=rank,
                world_size=world,
                timeout=timeout,
            )
        else:  # fsdp=on without torchrun: a world of one on a private port
            dist.init_process_group(
                backend,
                init_method=f"tcp://127.0.0.1:{_free_port()}",
                rank=0,
                world_size=1,
                timeout=timeout,
            )
    return DistContext(dist.get_rank(), dist.get_world_size(), local, sharded=True)


def rank_device(setting: torch.device, ctx: DistContext) -> torch.device:
    """One GPU per rank (LOCAL_RANK); CPU ranks share the host."""
    if setting.type == "cuda":
        torch.cuda.set_device(ctx.local_rank)
        return torch.device("cuda", ctx.local_rank)
    return setting


def broadcast(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's `obj` on every rank (pickled; used for small control messages only)."""
    if not ctx.sharded or ctx.world_size == 1:
        return obj
    box = [obj if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ctx: DistContext) -> None:
    if ctx.sharded and ctx.world_size > 1:
        dist.barrier()


def all_sum(values: dict[str, float], ctx: DistContext) -> dict[str, float]:
    """Sum per-rank partial sums (in a fixed key order so every rank pairs the same numbers)."""
    if not ctx.sharded or ctx.world_size == 1:
        return values
    keys = sorted(values)
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(keys, t.tolist(), strict=True))


def shutdown(ctx: DistContext) -> None:
    if ctx.sharded and dist.is_initialized():
        dist.destroy_process_group()
