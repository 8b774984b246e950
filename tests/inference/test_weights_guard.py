"""POST /v1/weights over a real (tiny, transformers) engine: only folders under the checkpoint
root (or the served base model), no symlinks on the way or inside, manifest names relative and
inside the folder, no weights file the manifest does not list, a bounded version number. Every
refusal is a 4xx that says why, and the previous weights keep serving."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from azr.common.checkpoints import sha256_file, verify_checkpoint
from services.inference.app import build_app
from services.inference.service import InferenceService
from services.inference.transformers_engine import TransformersEngine
from services.inference.weights_guard import WeightsRefused, checked_checkpoint
from tests.inference.helpers import perturbed_checkpoint

TOKEN = "weights-token"


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the checkpoint root, a folder outside it)."""
    return tmp_path_factory.mktemp("root"), tmp_path_factory.mktemp("outside")


@pytest.fixture(scope="module")
def good(tiny_model_dir: Path, dirs: tuple[Path, Path]) -> Path:
    """A valid checkpoint under the root."""
    return perturbed_checkpoint(tiny_model_dir, dirs[0] / "good", 1)


@pytest.fixture(scope="module")
def client(tiny_model_dir: Path, dirs: tuple[Path, Path]) -> Iterator[TestClient]:
    service = InferenceService(engine=TransformersEngine(tiny_model_dir, device="cpu"))
    app = build_app(service, token=TOKEN, checkpoint_root=dirs[0], wait_for_engine=True)
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        yield c


def rewrite_manifest(directory: Path, files: dict[str, str]) -> None:
    """A manifest whose own checksum is consistent (as a forger would write it)."""
    combined = hashlib.sha256()
    for name in sorted(files):
        combined.update(f"{name}:{files[name]}\n".encode())
    body = {"version": 1, "checksum": combined.hexdigest(), "files": files}
    (directory / "manifest.json").write_text(json.dumps(body))


def refused(client: TestClient, path: str, status: int, words: str, version: int = 1) -> None:
    before = client.get("/v1/weights").json()
    r = client.post("/v1/weights", json={"version": version, "path": path})
    assert r.status_code == status, r.text
    assert words in r.json()["detail"], r.json()["detail"]
    assert client.get("/v1/weights").json() == before  # still serving the previous weights


def test_a_folder_outside_the_root_is_refused(
    client: TestClient, good: Path, dirs: tuple[Path, Path]
) -> None:
    root, outside = dirs
    copy = shutil.copytree(good, outside / "v000001")
    verify_checkpoint(copy)  # a valid checkpoint, only in the wrong place
    refused(client, str(copy), 403, "outside the checkpoint root")
    refused(client, f"{root}/../{outside.name}/v000001", 403, "'..'")
    refused(client, str(root), 403, "outside the checkpoint root")


def test_symlinks_are_refused(client: TestClient, good: Path, dirs: tuple[Path, Path]) -> None:
    root, outside = dirs
    target = outside / "linked" / "v000001"
    shutil.copytree(good, target)
    (root / "folder-link").symlink_to(target, target_is_directory=True)
    refused(client, str(root / "folder-link"), 403, "is a symlink")
    (root / "parent-link").symlink_to(target.parent, target_is_directory=True)
    refused(client, str(root / "parent-link" / "v000001"), 403, "is a symlink")
    # a listed file replaced by a symlink to identical bytes: hashes match, still refused
    inner = shutil.copytree(good, root / "file-link" / "v000001")
    config = inner / "config.json"
    shutil.copy(config, outside / "config.json")
    config.unlink()
    config.symlink_to(outside / "config.json")
    verify_checkpoint(inner)
    refused(client, str(inner), 403, "is a symlink")


def test_manifest_names_must_stay_inside_the_folder(
    client: TestClient, good: Path, dirs: tuple[Path, Path]
) -> None:
    root, _ = dirs
    escape = shutil.copytree(good, root / "escape" / "v000001")
    (escape.parent / "secret.txt").write_text("not part of the checkpoint")
    files = json.loads((escape / "manifest.json").read_text())["files"]
    files["../secret.txt"] = sha256_file(escape.parent / "secret.txt")
    rewrite_manifest(escape, files)
    verify_checkpoint(escape)  # the manifest checks out by itself
    refused(client, str(escape), 422, "names must be relative paths inside the folder")
    absolute = shutil.copytree(good, root / "absolute" / "v000001")
    files = json.loads((absolute / "manifest.json").read_text())["files"]
    files[str(escape.parent / "secret.txt")] = sha256_file(escape.parent / "secret.txt")
    rewrite_manifest(absolute, files)
    refused(client, str(absolute), 422, "names must be relative paths inside the folder")


def test_an_unlisted_weights_file_is_refused(
    client: TestClient, good: Path, tiny_model_dir: Path, dirs: tuple[Path, Path]
) -> None:
    root, _ = dirs
    extra = shutil.copytree(good, root / "extra" / "v000001")
    # the base model's weights, unverified, next to the listed ones: an engine would load both
    (base_weights,) = sorted(tiny_model_dir.glob("*.safetensors"))
    shutil.copy(base_weights, extra / "zz-extra.safetensors")
    verify_checkpoint(extra)
    refused(client, str(extra), 422, "zz-extra.safetensors is not listed in manifest.json")


def test_the_version_is_bounded(client: TestClient, good: Path) -> None:
    for version in (-1, 10**9 + 1, 2**63):
        r = client.post("/v1/weights", json={"version": version, "path": str(good)})
        assert r.status_code == 422 and "version" in r.json()["detail"], r.text


def test_a_relative_path_is_taken_from_the_working_directory(
    good: Path, dirs: tuple[Path, Path], tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = dirs
    monkeypatch.chdir(root.parent)  # as a gateway sharing the working directory sends it
    relative = str(good.relative_to(root.parent))
    assert checked_checkpoint(relative, root, tiny_model_dir) == good
    monkeypatch.chdir(root)
    with pytest.raises(WeightsRefused, match="outside the checkpoint root"):
        checked_checkpoint(relative, root / "good", tiny_model_dir)


def test_a_listed_checkpoint_under_the_root_loads(
    client: TestClient, good: Path, tiny_model_dir: Path
) -> None:
    r = client.post("/v1/weights", json={"version": 10**9, "path": str(good)})
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 10**9 and r.json()["path"] == str(good)
    # back to the base model the service started with (outside the root, but its own)
    r = client.post("/v1/weights", json={"version": 0, "path": str(tiny_model_dir)})
    assert r.status_code == 200 and r.json()["version"] == 0
