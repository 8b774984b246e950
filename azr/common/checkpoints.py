"""The on-disk checkpoint format shared by the trainer (writer) and inference (reader).

A version lives in ``<checkpoint_dir>/v<NNNNNN>/``: HF safetensors weights, config, tokenizer,
and ``manifest.json`` with the sha256 of every file and one checksum over them. A version is
written into a temporary sibling folder and renamed into place, so a reader never sees half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"


class ChecksumMismatch(RuntimeError):
    """A checkpoint's files do not match its manifest (corrupt or half-written)."""


def version_dir(root: Path, version: int) -> Path:
    return Path(root) / f"v{version:06d}"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _combined(files: dict[str, str]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(f"{name}:{files[name]}\n".encode())
    return h.hexdigest()


def write_manifest(directory: Path, version: int, extra: dict[str, Any] | None = None) -> str:
    """Hash every file under `directory` (except the manifest) and write the manifest."""
    directory = Path(directory)
    files = {
        str(p.relative_to(directory)): sha256_file(p)
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    checksum = _combined(files)
    body = {"version": version, "checksum": checksum, "files": files, **(extra or {})}
    (directory / MANIFEST).write_text(json.dumps(body, indent=2, sort_keys=True))
    return checksum


def read_manifest(directory: Path) -> dict[str, Any]:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise ChecksumMismatch(f"{directory} has no {MANIFEST}")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def verify_checkpoint(directory: Path) -> str:
    """Re-hash the files named in the manifest; return the checksum or raise ChecksumMismatch."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    files: dict[str, str] = manifest.get("files", {})
    if not files:
        raise ChecksumMismatch(f"{directory}/{MANIFEST} lists no files")
    for name, digest in files.items():
        path = directory / name
        if not path.is_file():
            raise ChecksumMismatch(f"{directory}: {name} is missing")
        if sha256_file(path) != digest:
            raise ChecksumMismatch(f"{directory}: {name} does not match its sha256")
    if _combined(files) != manifest.get("checksum"):
        raise ChecksumMismatch(f"{directory}: manifest checksum is inconsistent")
    return str(manifest["checksum"])


def save_model_checkpoint(
    model: Any, tokenizer: Any, root: Path, version: int, extra: dict[str, Any] | None = None
) -> Path:
    """Save an HF causal LM atomically as version `version`; returns the final folder.

    Tied input/output embeddings are written untied with an explicit ``lm_head.weight``: vLLM's
    in-place reload on CPU leaves a tied head on the old weights.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = version_dir(root, version)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=root))
    try:
        config = model.config
        if getattr(config, "tie_word_embeddings", False):
            import torch

            head = model.get_output_embeddings()
            with torch.no_grad():
                head.weight = torch.nn.Parameter(head.weight.detach().clone())
            config.tie_word_embeddings = False
            if hasattr(config, "text_config"):
                config.text_config.tie_word_embeddings = False
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        write_manifest(tmp, version, extra)
        publish_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def fsync_dir(directory: Path) -> None:
    """Flush a folder's entries (names created, renamed or removed in it) to disk."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish_dir(tmp: Path, final: Path) -> None:
    """Flush every file of a finished temporary folder, then rename it into place whole and
    flush the parent, so that after a power loss the version is either there or not."""
    for p in Path(tmp).rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
        elif p.is_dir():
            fsync_dir(p)
    fsync_dir(Path(tmp))
    if final.exists():  # a leftover of an identical version id: replace it whole
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_dir(Path(final).parent)


def list_versions(root: Path) -> list[int]:
    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        if (
            p.is_dir()
            and p.name.startswith("v")
            and p.name[1:].isdigit()
            and (p / MANIFEST).exists()
        ):
            out.append(int(p.name[1:]))
    return sorted(out)
