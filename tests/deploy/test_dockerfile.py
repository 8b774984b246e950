"""Static checks of deploy/Dockerfile and deploy/build-images.sh (no Docker engine in CI), plus
real runs of the helper scripts the images carry."""

from __future__ import annotations

import http.server
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy import dockerfile as d

TEXT = d.DOCKERFILE.read_text()
DF = d.parse(TEXT)
TARGETS = d.build_targets(d.BUILD_SCRIPT.read_text())
ALL_TARGETS = sorted({t for ts in TARGETS.values() for t in ts})
GPU_TARGETS = [t for t in ALL_TARGETS if t.endswith("-gpu")]
CPU_TARGETS = [t for t in ALL_TARGETS if not t.endswith("-gpu")]


def test_build_script_targets_exist() -> None:
    assert set(TARGETS) == {"gpu", "cpu", "all"}
    assert set(TARGETS["all"]) == set(TARGETS["gpu"]) | set(TARGETS["cpu"])
    names = {s.name for s in DF.stages}
    assert set(ALL_TARGETS) <= names
    assert {"gateway", "executor", "inference-gpu", "trainer-gpu"} <= set(ALL_TARGETS)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_runtime_images_are_non_root_healthchecked_and_compiler_free(target: str) -> None:
    assert d.user_problems(DF, target) == []
    assert d.healthcheck_problems(DF, target) == []
    assert d.compiler_problems(DF, target) == []
    assert [i for s in DF.chain(target) for i in s.ops("CMD")], f"{target}: no CMD"


def test_compilers_exist_only_in_build_stages() -> None:
    builders = [
        s.name
        for s in DF.stages
        if any(
            d.COMPILER_PACKAGES.match(p) for i in s.ops("RUN") for p in d.installed_packages(i.args)
        )
    ]
    assert builders == ["build"]
    assert not any(s.name in ALL_TARGETS for s in DF.chain("build-vllm-cpu"))


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_cpu_images_use_a_slim_pinned_python(target: str) -> None:
    base = DF.external_base(target)
    assert base.startswith("python:3.11-slim"), base


@pytest.mark.parametrize("target", GPU_TARGETS)
def test_gpu_images_build_on_a_pinned_vllm_serving_image(target: str) -> None:
    base = DF.external_base(target)
    repo, _, tag = base.partition(":")
    assert repo == "vllm/vllm-openai" and tag.startswith("v") and tag != "latest", base
    # vLLM's CUDA torch must survive: the project is installed without its deps, the rest by list.
    runs = " ".join(i.args for s in DF.chain(target) for i in s.ops("RUN"))
    assert "pip install --no-deps /src" in runs and "gpu-requirements.py" in runs


def test_executor_interpreter_is_readable_by_the_sandbox_uid() -> None:
    runs = [i.args for s in DF.chain("executor") for i in s.ops("RUN")]
    chmods = [r for r in runs if "chmod -R a+rX" in r]
    assert chmods, "no world-readable interpreter in the executor image"
    assert "/opt/azr" in chmods[0] and "/usr/local/lib/python3.11" in chmods[0]
    # pyseccomp needs the shared library at run time.
    assert "libseccomp2" in " ".join(p for r in runs for p in d.installed_packages(r))


def test_arg_scopes_and_copy_sources() -> None:
    assert d.arg_scope_problems(DF) == []
    ignore = (d.REPO / "deploy" / "Dockerfile.dockerignore").read_text()
    assert d.copy_source_problems(DF, ignore) == []


def test_checks_catch_a_broken_dockerfile() -> None:
    broken = TEXT.replace(
        'CMD ["serve", "gateway"',
        'USER root\nRUN apt-get update && apt-get install -y --no-install-recommends gcc\nCMD ["serve", "gateway"',
    )
    broken = re.sub(
        r'HEALTHCHECK [^\n]*\\\n  CMD \["azr-healthcheck", "8100"\]', "HEALTHCHECK NONE", broken
    )
    broken = broken.replace(
        "FROM runtime-base AS runtime\nARG AZR_UID\n", "FROM runtime-base AS runtime\n"
    )
    df = d.parse(broken)
    assert d.user_problems(df, "gateway") == ["gateway: USER root is root"]
    assert d.compiler_problems(df, "gateway") == [
        f"gateway: installs gcc (line {broken[: broken.index('apt-get install -y --no-install-recommends gcc')].count(chr(10)) + 1})"
    ]
    assert d.healthcheck_problems(df, "executor") == ["executor: HEALTHCHECK NONE"]
    assert any("undeclared ${AZR_UID}" in p for p in d.arg_scope_problems(df))
    assert d.copy_source_problems(df, "**\n!azr/**\n") != []


def test_build_script_runs_each_target(tmp_path: Path) -> None:
    env = {**os.environ, "BUILDER": "echo", "REGISTRY": "registry.example/acme/", "TAG": "t1"}
    out = subprocess.run(
        ["bash", str(d.BUILD_SCRIPT)], env=env, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    builds = [line for line in out.stdout.splitlines() if line.startswith("--platform")]
    assert len(builds) == len(TARGETS["gpu"])
    for target in TARGETS["gpu"]:
        assert any(
            f"--target {target} -t registry.example/acme/azr-{target}:t1" in b for b in builds
        )
    bad = subprocess.run(
        ["bash", str(d.BUILD_SCRIPT)],
        env={**env, "AZR_IMAGE_SET": "tpu"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2 and "AZR_IMAGE_SET" in bad.stderr


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
    script = str(d.REPO / "deploy" / "healthcheck.py")
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
            str(d.REPO / "deploy" / "gpu-requirements.py"),
            str(d.REPO / "pyproject.toml"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    names = {
        line.split(">")[0].split("=")[0].split("[")[0].split("<")[0].strip()
        for line in out.stdout.splitlines()
    }
    assert "torch" not in names and not any(n.startswith("vllm") for n in names)
    assert {"fastapi", "celery", "transformers", "pyseccomp"} <= names
