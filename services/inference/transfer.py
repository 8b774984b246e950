"""How a published weight version reaches the engine: the one seam a faster transport plugs into.

The loop only ever says "serve version v from source s" (POST /v1/weights); what s means and how
the bytes travel is the transfer's business. The filesystem transfer, the default, reads the
consolidated safetensors folder the trainer published on the shared volume (verified against
its manifest first). docs/deploy.md ("Weight transfer") describes how an NCCL broadcast through
vLLM's weight-transfer routes plugs in here without a change to the loop or the trainer's
version log.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

from services.inference.engine import Engine, WeightsInfo


class WeightTransfer(ABC):
    name: ClassVar[str]

    @abstractmethod
    async def receive(self, engine: Engine, version: int, source: str) -> WeightsInfo:
        """Make `engine` serve `version` (all of it, or raise and keep the previous one)."""


class FilesystemTransfer(WeightTransfer):
    """`source` is a version folder on storage this replica mounts (a shared RWX volume)."""

    name = "filesystem"

    async def receive(self, engine: Engine, version: int, source: str) -> WeightsInfo:
        return await engine.load_weights(version, Path(source))


TRANSFERS: dict[str, type[WeightTransfer]] = {FilesystemTransfer.name: FilesystemTransfer}


def make_transfer(name: str) -> WeightTransfer:
    try:
        return TRANSFERS[name]()
    except KeyError:
        raise ValueError(f"unknown weight transfer {name!r}; known: {sorted(TRANSFERS)}") from None
