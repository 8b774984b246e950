"""The chart and the images agree, checked from the files (no build): image names and tags,
ports, probes, uid, read-only root and the executor's runtime, between the rendered chart,
deploy/Dockerfile, deploy/build-images.sh and deploy/smoke-images.sh (which starts each image
the way this test says the chart does). Each check is also shown to catch a disagreement."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import manifests as m

pytestmark = pytest.mark.skipif(m.helm_binary() is None, reason="helm not installed (make setup)")

DOCKERFILE = m.REPO / "deploy" / "Dockerfile"
BUILD_SCRIPT = m.REPO / "deploy" / "build-images.sh"
SMOKE_SCRIPT = m.REPO / "deploy" / "smoke-images.sh"
SMOKE_DRIVER = m.REPO / "deploy" / "smoke" / "in_container.py"
HEALTHCHECK = m.REPO / "deploy" / "healthcheck.py"
AZR_ROLES = {"gateway", "inference", "executor", "executor-worker", "trainer"}


@dataclass
class Stage:
    """What a runtime target declares: only the lines this agreement is about."""

    name: str
    expose: list[int] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    health_port: int | None = None


def stages(text: str) -> dict[str, Stage]:
    found: dict[str, Stage] = {}
    current: Stage | None = None
    for line in text.replace("\\\n", " ").splitlines():
        if head := re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.IGNORECASE):
            current = found.setdefault(head.group(1), Stage(head.group(1)))
        elif current and line.startswith("EXPOSE "):
            current.expose += [int(p.split("/")[0]) for p in line.split()[1:]]
        elif current and line.startswith("CMD "):
            current.cmd = json.loads(line[4:])
        elif current and (hc := re.search(r'HEALTHCHECK .*"azr-healthcheck", "(\d+)"', line)):
            current.health_port = int(hc.group(1))
    return found


def arg_default(text: str, name: str) -> str:
    hit = re.search(rf"^ARG {name}=(\S+)$", text, re.MULTILINE)
    assert hit, f"no ARG {name}=... in the Dockerfile"
    return hit.group(1)


def script_var(text: str, pattern: str) -> str:
    hit = re.search(pattern, text, re.MULTILINE)
    assert hit, f"{pattern!r} not found"
    return hit.group(1)


def project_version() -> str:
    with open(m.REPO / "pyproject.toml", "rb") as handle:
        return str(tomllib.load(handle)["project"]["version"])


def cpu_targets(build_script: str) -> list[str]:
    return script_var(build_script, r"^\s*cpu\) targets=\(([^)]*)\)").split()


def agreement_problems(
    docs: list[dict[str, Any]],
    values: dict[str, Any],
    dockerfile: str,
    smoke: str,
    driver: str,
) -> list[str]:
    problems: list[str] = []
    by_target = stages(dockerfile)
    tag = project_version()
    uid = int(arg_default(dockerfile, "AZR_UID"))
    smoke_uid = int(script_var(smoke, r"^AZR_UID=(\d+)$"))
    if smoke_uid != uid:
        problems.append(f"smoke runs uid {smoke_uid}, images are built for {uid}")
    for workload in m.workloads(docs):
        if m.role(workload) not in AZR_ROLES:
            continue
        pod = m.pod_spec(workload)
        for container in pod["containers"]:
            where = f"{workload['metadata']['name']}/{container['name']}"
            image = str(container["image"])
            hit = re.fullmatch(r"(?:.*/)?azr-([a-z0-9-]+):(.+)", image)
            if not hit:
                problems.append(f"{where}: image {image} is not azr-<target>:<tag>")
                continue
            target, image_tag = hit.groups()
            stage = by_target.get(target)
            if stage is None:
                problems.append(f"{where}: no Dockerfile target {target}")
                continue
            if image_tag != tag:
                problems.append(f"{where}: tag {image_tag}, build-images.sh tags {tag}")
            security = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
            if security.get("runAsUser") != uid or security.get("runAsGroup") != uid:
                problems.append(f"{where}: runs as {security.get('runAsUser')}, image uid {uid}")
            if security.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: root file system not read-only (smoke uses --read-only)")
            # the services refuse to listen beyond loopback without the token the chart passes
            for env in container.get("env", []):
                secret = env.get("valueFrom", {}).get("secretKeyRef", {})
                if secret.get("key") == "api-token" and f'-e {env["name"]}="$token"' not in smoke:
                    problems.append(f"{where}: the chart sets {env['name']}, the smoke test not")
            mounts = {v["mountPath"] for v in container.get("volumeMounts", [])}
            if not {"/tmp", "/data"} <= mounts:
                problems.append(
                    f"{where}: mounts {sorted(mounts)}; the smoke test writes /tmp, /data"
                )
            ports = [p["containerPort"] for p in container.get("ports", [])]
            if ports:
                if ports != stage.expose or stage.health_port != ports[0]:
                    problems.append(
                        f"{where}: port {ports}, image EXPOSE {stage.expose} "
                        f"HEALTHCHECK {stage.health_port}"
                    )
                args = container.get("args")
                if args and args != stage.cmd:
                    problems.append(f"{where}: args {args}, image CMD {stage.cmd}")
                paths = {
                    probe: container[probe]["httpGet"]["path"]
                    for probe in ("startupProbe", "livenessProbe", "readinessProbe")
                    if "httpGet" in container.get(probe, {})
                }
                if (
                    paths.get("readinessProbe") != "/readyz"
                    or 'READY_PATH = "/readyz"' not in driver
                ):
                    problems.append(f"{where}: readiness {paths}; the smoke test waits on /readyz")
                if paths.get("livenessProbe") != "/healthz":
                    problems.append(f"{where}: liveness {paths}; HEALTHCHECK probes /healthz")
    gvisor = values["gvisor"]
    smoke_runtime = script_var(smoke, r"^RUNTIME=\$\{AZR_SMOKE_RUNTIME:-(\w+)\}$")
    if not gvisor["enabled"] or gvisor["handler"] != smoke_runtime:
        problems.append(f"executor runtime: chart {gvisor}, smoke test {smoke_runtime}")
    for workload in m.workloads(docs):
        runtime_class = m.pod_spec(workload).get("runtimeClassName")
        if m.role(workload) in {"executor", "executor-worker"} and (
            runtime_class != gvisor["runtimeClassName"]
        ):
            problems.append(f"{workload['metadata']['name']}: not on the gVisor RuntimeClass")
    return problems


@pytest.fixture(scope="module")
def default_docs() -> list[dict[str, Any]]:
    return m.render()


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return dict(yaml.safe_load((m.CHART / "values.yaml").read_text()))


def read(path: Path) -> str:
    return path.read_text()


def test_chart_images_and_smoke_agree(
    default_docs: list[dict[str, Any]], values: dict[str, Any]
) -> None:
    problems = agreement_problems(
        default_docs, values, read(DOCKERFILE), read(SMOKE_SCRIPT), read(SMOKE_DRIVER)
    )
    assert problems == []


def test_gpu_values_name_built_targets(values: dict[str, Any]) -> None:
    docs = m.render(values=[m.GPU_VALUES])
    problems = agreement_problems(
        docs, values, read(DOCKERFILE), read(SMOKE_SCRIPT), read(SMOKE_DRIVER)
    )
    assert problems == []


def test_the_smoke_test_covers_every_cpu_image_the_chart_runs(
    default_docs: list[dict[str, Any]],
) -> None:
    chart_targets = {
        re.sub(r"^(?:.*/)?azr-([a-z0-9-]+):.*$", r"\1", str(c["image"]))
        for w in m.workloads(default_docs)
        if m.role(w) in AZR_ROLES
        for c in m.pod_spec(w)["containers"]
    }
    built = set(cpu_targets(read(BUILD_SCRIPT)))
    smoked = set(script_var(read(SMOKE_SCRIPT), r"AZR_SMOKE_IMAGES:-([^}]*)\}").split())
    assert chart_targets <= built == smoked
    # the version the images are tagged with is the chart's appVersion
    chart = yaml.safe_load((m.CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == project_version()


def test_healthcheck_probes_the_liveness_path() -> None:
    assert re.search(r'else "/healthz"', read(HEALTHCHECK))


def test_disagreements_are_caught(values: dict[str, Any]) -> None:
    docs = m.render(sets=["executor.port=8101", "containerSecurityContext.runAsUser=10002"])
    dockerfile = read(DOCKERFILE).replace('"azr-healthcheck", "8000"', '"azr-healthcheck", "8001"')
    smoke = (
        read(SMOKE_SCRIPT)
        .replace("AZR_SMOKE_RUNTIME:-runsc", "AZR_SMOKE_RUNTIME:-crun")
        .replace('-e AZR_SERVICE_TOKEN="$token"', "")
    )
    problems = agreement_problems(docs, values, dockerfile, smoke, read(SMOKE_DRIVER))
    text = "\n".join(problems)
    assert "port [8101]" in text  # executor port vs EXPOSE
    assert "runs as 10002" in text
    assert "HEALTHCHECK 8001" in text
    assert "smoke test crun" in text
    assert "the chart sets AZR_SERVICE_TOKEN, the smoke test not" in text
    retagged = m.render(sets=["image.tag=9.9.9"])
    problems = agreement_problems(
        retagged, values, read(DOCKERFILE), read(SMOKE_SCRIPT), read(SMOKE_DRIVER)
    )
    assert any("tag 9.9.9" in p for p in problems)
