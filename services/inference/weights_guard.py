"""Which folders POST /v1/weights may load: the checks that run before any file of a checkpoint
is opened by an engine.

A weight swap is asked for over HTTP, so the folder it names is untrusted: it must lie under the
checkpoint root (or be the base model the service started with), no component of its path and no
entry inside it may be a symlink, its manifest may name only plain files inside it, and every
weights file in it must be one the manifest lists (an engine loads every ``*.safetensors`` it
finds, so an unlisted one would be loaded unverified).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

from azr.common.checkpoints import MANIFEST

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf")
_DIGEST = re.compile(r"[0-9a-f]{64}")


class WeightsRefused(ValueError):
    """The request names a folder the service will not load; `status_code` says which 4xx."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code


def _absolute(path: Path) -> Path:
    # abspath normalises lexically; '..' was refused before, so this cannot climb out
    return Path(os.path.abspath(path))


def _no_symlink_below(base: Path, target: Path, what: str) -> None:
    """No component of `target` below `base` is a symlink."""
    current = base
    for part in target.relative_to(base).parts:
        current = current / part
        if current.is_symlink():
            raise WeightsRefused(403, f"{what}: {current} is a symlink (symlinks are not loaded)")


def checked_checkpoint(path_text: str, root: Path, base_model: Path) -> Path:
    """The folder to load, or WeightsRefused (403 outside / symlink, 422 bad contents)."""
    raw = PurePosixPath(path_text)
    if ".." in raw.parts:
        raise WeightsRefused(403, f"path {path_text!r} contains '..'")
    root = _absolute(root)
    candidate = _absolute(Path(raw))  # relative: to this process's directory, as before
    base = _absolute(base_model)
    if candidate == base:
        pass  # the model the service started with: the operator chose its path
    elif candidate != root and candidate.is_relative_to(root):
        _no_symlink_below(root, candidate, "path")
        if not candidate.resolve().is_relative_to(root.resolve()):
            raise WeightsRefused(403, f"{candidate} resolves outside the checkpoint root")
    else:
        raise WeightsRefused(
            403,
            f"{candidate} is outside the checkpoint root {root} (AZR_INFERENCE__CHECKPOINT_ROOT);"
            " weights load only from a version folder under it or from the served base model",
        )
    if not candidate.is_dir():
        raise WeightsRefused(422, f"checkpoint {candidate} does not exist")
    check_contents(candidate)
    return candidate


def manifest_files(directory: Path) -> dict[str, str]:
    """The manifest's file table after strict checks of the manifest itself."""
    path = directory / MANIFEST
    if path.is_symlink() or not path.is_file():
        raise WeightsRefused(422, f"checkpoint {directory} has no {MANIFEST} (or it is a symlink)")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise WeightsRefused(422, f"{MANIFEST} of {directory} is over {MAX_MANIFEST_BYTES} bytes")
    try:
        data: Any = json.loads(path.read_bytes())
    except ValueError as exc:
        raise WeightsRefused(422, f"{MANIFEST} of {directory} is not JSON: {exc}") from None
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict) or not files:
        raise WeightsRefused(422, f"{MANIFEST} of {directory} lists no files")
    for name, digest in files.items():
        if (
            not isinstance(name, str)
            or not isinstance(digest, str)
            or not _DIGEST.fullmatch(digest)
        ):
            raise WeightsRefused(422, f"{MANIFEST}: entry {name!r} is not a name with a sha256")
        check_name(directory, name)
    return dict(files)


def check_name(directory: Path, name: str) -> None:
    """A manifest name: relative, inside the folder, no symlink on the way, a regular file."""
    pure = PurePosixPath(name)
    if (
        not name
        or "\\" in name
        or "\x00" in name
        or pure.is_absolute()
        or any(part in ("..", ".", "") for part in name.split("/"))
    ):
        raise WeightsRefused(
            422, f"{MANIFEST} names {name!r}: names must be relative paths inside the folder"
        )
    target = directory / pure
    _no_symlink_below(directory, target, f"{MANIFEST} entry {name!r}")
    if target.exists() and not target.is_file():
        raise WeightsRefused(422, f"{MANIFEST} entry {name!r} is not a regular file")


def check_contents(directory: Path) -> None:
    """No symlink anywhere in the folder, and every weights file is listed in the manifest."""
    listed = set(manifest_files(directory))
    for current, dirs, files in os.walk(directory, followlinks=False):
        here = Path(current)
        for entry in [*dirs, *files]:
            full = here / entry
            rel = full.relative_to(directory).as_posix()
            if full.is_symlink():
                raise WeightsRefused(
                    403, f"{directory}: {rel} is a symlink (symlinks are not loaded)"
                )
            if entry in files and entry.endswith(WEIGHT_SUFFIXES) and rel not in listed:
                raise WeightsRefused(
                    422,
                    f"{directory}: weights file {rel} is not listed in {MANIFEST}; only the "
                    "files a manifest lists (and whose sha256 it holds) are loaded",
                )
