"""Trainer state beside the weight versions, and the retention policy.

``<checkpoint_dir>/trainer-state/v000012/`` holds the optimizer state and ``state.json`` (the
batch_id -> version map, step counters) for weights version 12, with a checksum manifest. It is
written atomically *before* the weights of the same version, so whenever a version exists its
trainer state does too; a state folder without its weights (a crash between the two renames) is
ignored and overwritten.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from azr.common.checkpoints import (
    ChecksumMismatch,
    list_versions,
    publish_dir,
    verify_checkpoint,
    version_dir,
    write_manifest,
)

STATE_DIR = "trainer-state"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "state.json"


@dataclass
class TrainerState:
    version: int = 0
    updates: int = 0
    batches: dict[str, int] = field(default_factory=dict)  # batch_id -> version it produced
    last_metrics: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "updates": self.updates,
            "batches": self.batches,
            "last_metrics": self.last_metrics,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainerState:
        return cls(
            version=int(data["version"]),
            updates=int(data.get("updates", 0)),
            batches={str(k): int(v) for k, v in data.get("batches", {}).items()},
            last_metrics=dict(data.get("last_metrics", {})),
        )


def state_dir(root: Path, version: int) -> Path:
    return Path(root) / STATE_DIR / f"v{version:06d}"


def save_trainer_state(
    root: Path, version: int, state: TrainerState, optimizer: torch.optim.Optimizer
) -> Path:
    parent = Path(root) / STATE_DIR
    parent.mkdir(parents=True, exist_ok=True)
    final = state_dir(root, version)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=parent))
    try:
        torch.save(optimizer.state_dict(), tmp / OPTIMIZER_FILE)
        (tmp / STATE_FILE).write_text(json.dumps(state.to_json(), indent=1, sort_keys=True))
        write_manifest(tmp, version, {"kind": "trainer-state"})
        publish_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def load_trainer_state(root: Path, version: int) -> tuple[TrainerState, dict[str, Any]] | None:
    """The verified state and optimizer state dict of `version`, or None when absent/corrupt."""
    directory = state_dir(root, version)
    if not directory.is_dir():
        return None
    try:
        verify_checkpoint(directory)
    except ChecksumMismatch:
        return None
    state = TrainerState.from_json(json.loads((directory / STATE_FILE).read_text()))
    optim = torch.load(directory / OPTIMIZER_FILE, map_location="cpu", weights_only=True)
    return state, optim


def versions_to_delete(versions: list[int], keep_last: int, keep_every: int) -> list[int]:
    """Keep the last `keep_last`, every `keep_every`-th, version 0 (the base) and the newest."""
    if not versions:
        return []
    newest = max(versions)
    recent = set(sorted(versions)[-max(keep_last, 1) :])
    keep = {0, newest} | recent
    if keep_every > 0:
        keep |= {v for v in versions if v % keep_every == 0}
    return sorted(v for v in versions if v not in keep)


def apply_retention(root: Path, keep_last: int, keep_every: int) -> list[int]:
    """Delete old weight versions and every trainer state but the newest version's."""
    root = Path(root)
    versions = list_versions(root)
    doomed = versions_to_delete(versions, keep_last, keep_every)
    for v in doomed:
        # Rename first so a reader never sees a half-deleted version folder.
        victim = version_dir(root, v)
        trash = victim.with_name(f".del-{victim.name}")
        os.replace(victim, trash)
        shutil.rmtree(trash, ignore_errors=True)
    newest = max(versions) if versions else None
    parent = root / STATE_DIR
    if parent.is_dir():
        for p in parent.iterdir():
            stale = p.name.startswith(".tmp-") or (
                p.name.startswith("v") and p.name[1:].isdigit() and int(p.name[1:]) != newest
            )
            if stale:
                shutil.rmtree(p, ignore_errors=True)
    for p in root.glob(".tmp-*"):  # leftovers of a save interrupted by a crash
        shutil.rmtree(p, ignore_errors=True)
    return doomed
