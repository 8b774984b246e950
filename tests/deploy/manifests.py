"""Render the Helm chart and check properties of the rendered manifests.

Every check returns a list of problems (empty when the property holds), so the tests can also
feed them deliberately broken manifests and assert the problem is found. Which pods run which
service is read from the container command (`azr serve NAME`), not from the chart's own labels,
so a label mistake in the chart cannot hide itself.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, cast

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "k8s" / "azr"
GPU_VALUES = CHART / "values-gpu.yaml"
SEVEN_B_VALUES = CHART / "values-7b.yaml"
KUBE_VERSION = "1.33.0"
RELEASE = "azr"

Doc = dict[str, Any]

# Services whose pods run model-written code.
UNTRUSTED = {"executor", "executor-worker"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}


def helm_binary() -> str | None:
    local = REPO / ".venv" / "bin" / "helm"
    if local.exists():
        return str(local)
    return shutil.which("helm")


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    binary = helm_binary()
    if binary is None:
        raise RuntimeError("helm not found (.venv/bin/helm or PATH); run `make setup`")
    # Rendering needs no repositories or plugins: keep helm away from the user's config.
    scratch = Path(tempfile.gettempdir()) / f"azr-helm-{os.getuid()}"
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(scratch / "cache"),
        "HELM_CONFIG_HOME": str(scratch / "config"),
    }
    return subprocess.run([binary, *args], capture_output=True, text=True, env=env, timeout=120)


def render(
    *,
    values: Iterable[Path] = (),
    sets: Iterable[str] = (),
    api_versions: Iterable[str] = (),
) -> list[Doc]:
    args = ["template", RELEASE, str(CHART), "--kube-version", KUBE_VERSION]
    for path in values:
        args += ["-f", str(path)]
    for item in sets:
        args += ["--set", item]
    for api in api_versions:
        args += ["--api-versions", api]
    result = helm(*args)
    if result.returncode != 0:
        raise RuntimeError(f"helm template failed: {result.stderr}")
    return [d for d in yaml.safe_load_all(result.stdout) if d]


# --- structure helpers ------------------------------------------------------------------------


def workloads(docs: list[Doc]) -> Iterator[Doc]:
    return (d for d in docs if d["kind"] in WORKLOAD_KINDS)


def pod_spec(workload: Doc) -> Doc:
    return cast(Doc, workload["spec"]["template"]["spec"])


def pod_labels(workload: Doc) -> dict[str, str]:
    return cast(dict[str, str], workload["spec"]["template"]["metadata"].get("labels", {}))


def containers(workload: Doc) -> list[Doc]:
    spec = pod_spec(workload)
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def role(workload: Doc) -> str:
    """What the pod runs: the NAME of `azr serve NAME`, else the container image's name."""
    for container in pod_spec(workload)["containers"]:
        argv = list(container.get("command", [])) + list(container.get("args", []))
        if "serve" in argv and argv.index("serve") + 1 < len(argv):
            return str(argv[argv.index("serve") + 1])
    image = str(pod_spec(workload)["containers"][0]["image"])
    name = image.rsplit("/", 1)[-1].split(":", 1)[0]
    return {"postgres": "postgresql"}.get(name, name)


def by_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def workload_by_role(docs: list[Doc], name: str) -> Doc:
    found = [w for w in workloads(docs) if role(w) == name]
    if len(found) != 1:
        raise LookupError(f"expected one workload running {name!r}, found {len(found)}")
    return found[0]


def effective_env(docs: list[Doc], container: Doc) -> dict[str, str]:
    """Literal env of a container: its ConfigMaps (envFrom) overlaid by `env` values."""
    maps = {d["metadata"]["name"]: d.get("data", {}) for d in by_kind(docs, "ConfigMap")}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        if ref:
            env.update(maps.get(ref["name"], {}))
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        else:
            env.pop(item["name"], None)
    return env


def matches(selector: Doc, labels: dict[str, str]) -> bool:
    if selector.get("matchExpressions"):
        raise NotImplementedError("matchExpressions are not used by this chart")
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def mutated(docs: list[Doc]) -> list[Doc]:
    return copy.deepcopy(docs)


# --- checks -------------------------------------------------------------------------------------


def gvisor_problems(docs: list[Doc]) -> list[str]:
    """Every pod that runs untrusted code uses a RuntimeClass whose handler is runsc (when the
    chart creates the RuntimeClass) or is named like the gVisor class."""
    problems = []
    classes = {d["metadata"]["name"]: d for d in by_kind(docs, "RuntimeClass")}
    for w in workloads(docs):
        if role(w) not in UNTRUSTED:
            continue
        name = pod_spec(w).get("runtimeClassName")
        if not name:
            problems.append(
                f"{w['metadata']['name']}: runs untrusted code without runtimeClassName"
            )
        elif name in classes and classes[name]["handler"] != "runsc":
            problems.append(f"{w['metadata']['name']}: RuntimeClass {name} is not gVisor (runsc)")
    return problems


def security_problems(docs: list[Doc]) -> list[str]:
    """No container can run as root or gain privileges; root filesystems are read-only with a
    writable /tmp; no service-account token is mounted on executor pods."""
    problems = []
    for w in workloads(docs):
        spec = pod_spec(w)
        pod_sc = spec.get("securityContext", {})
        wname = w["metadata"]["name"]
        if role(w) in UNTRUSTED and spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{wname}: executor pod mounts a service-account token")
        if pod_sc.get("runAsUser") == 0:
            problems.append(f"{wname}: pod runAsUser 0")
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in containers(w):
            where = f"{wname}/{c['name']}"
            sc = c.get("securityContext", {})
            non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
            uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
            if non_root is not True:
                problems.append(f"{where}: runAsNonRoot is not true")
            if uid == 0:
                problems.append(f"{where}: runAsUser 0")
            if sc.get("privileged"):
                problems.append(f"{where}: privileged")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: root filesystem is writable")
            if "ALL" not in (sc.get("capabilities", {}).get("drop") or []):
                problems.append(f"{where}: capabilities not all dropped")
            if sc.get("capabilities", {}).get("add"):
                problems.append(f"{where}: adds capabilities")
            seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {}))
            if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
                problems.append(f"{where}: no RuntimeDefault seccomp profile")
            tmp = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
            if not tmp or "emptyDir" not in volumes.get(tmp[0]["name"], {}):
                problems.append(f"{where}: no emptyDir at /tmp")
    return problems


def probe_and_resource_problems(docs: list[Doc]) -> list[str]:
    problems = []
    for w in workloads(docs):
        for c in containers(w):
            where = f"{w['metadata']['name']}/{c['name']}"
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                spec = c.get(probe)
                if not spec:
                    problems.append(f"{where}: no {probe}")
                    continue
                port = (spec.get("httpGet") or spec.get("tcpSocket") or {}).get("port")
                declared = {p.get("name") for p in c.get("ports", [])} | {
                    p["containerPort"] for p in c.get("ports", [])
                }
                if port is not None and port not in declared:
                    problems.append(f"{where}: {probe} port {port} is not a container port")
            resources = c.get("resources") or {}
            for kind in ("requests", "limits"):
                for res in ("cpu", "memory"):
                    if not (resources.get(kind) or {}).get(res):
                        problems.append(f"{where}: no {kind}.{res}")
    return problems


def _selected(docs: list[Doc], selector: Doc) -> set[str]:
    return {role(w) for w in workloads(docs) if matches(selector, pod_labels(w))}


def network_policy_problems(
    docs: list[Doc], *, vllm_port: int = 8300, redis_port: int = 6379
) -> list[str]:
    """Each policy selects exactly the pods its name claims; peers select real pods; executors
    reach only Redis and DNS; internal services accept only the gateway; vLLM is in no Service."""
    problems = []
    policies = by_kind(docs, "NetworkPolicy")
    roles = {role(w) for w in workloads(docs)}
    covered: set[str] = set()
    for pol in policies:
        name = pol["metadata"]["name"]
        claimed = name.removeprefix(f"{RELEASE}-")
        selected = _selected(docs, pol["spec"]["podSelector"])
        expected = roles if claimed == "default-deny" else {claimed}
        if selected != expected:
            problems.append(f"{name}: selects {sorted(selected)}, claims {sorted(expected)}")
        if claimed == "default-deny":
            if pol["spec"].get("ingress") or pol["spec"].get("egress"):
                problems.append(f"{name}: default-deny has rules")
            if set(pol["spec"].get("policyTypes", [])) != {"Ingress", "Egress"}:
                problems.append(f"{name}: default-deny does not cover both directions")
            continue
        covered |= selected
        for direction, key in (("ingress", "from"), ("egress", "to")):
            for rule in pol["spec"].get(direction) or []:
                for peer in rule.get(key) or []:
                    if (
                        "podSelector" in peer
                        and "namespaceSelector" not in peer
                        and not _selected(docs, peer["podSelector"])
                    ):
                        problems.append(f"{name}: {direction} peer selects no pod")
        ingress_sources = {
            r
            for rule in pol["spec"].get("ingress") or []
            for peer in rule.get("from") or []
            if "podSelector" in peer and "namespaceSelector" not in peer
            for r in _selected(docs, peer["podSelector"])
        }
        open_ingress = [r for r in pol["spec"].get("ingress") or [] if not r.get("from")]
        if claimed in {"inference", "executor", "trainer"}:
            if open_ingress:
                problems.append(f"{name}: ingress open to any source")
            if ingress_sources - {"gateway", "trainer"}:
                problems.append(f"{name}: ingress from {sorted(ingress_sources)}")
        if claimed == "executor-worker" and (open_ingress or ingress_sources):
            problems.append(f"{name}: worker accepts in-cluster traffic {sorted(ingress_sources)}")
        if claimed in UNTRUSTED:
            for rule in pol["spec"].get("egress") or []:
                ports = {p.get("port") for p in rule.get("ports") or []}
                if not ports:
                    problems.append(f"{name}: egress to every port")
                elif ports == {53}:
                    continue
                elif ports != {redis_port}:
                    problems.append(f"{name}: egress to ports {sorted(ports, key=str)}")
                else:
                    for peer in rule.get("to") or []:
                        if "podSelector" in peer and _selected(docs, peer["podSelector"]) != {
                            "redis"
                        }:
                            problems.append(f"{name}: Redis egress reaches other pods")
    for missing in sorted(roles - covered):
        problems.append(f"{missing}: no NetworkPolicy allows its traffic")
    if not any(p["metadata"]["name"] == f"{RELEASE}-default-deny" for p in policies):
        problems.append("no default-deny NetworkPolicy")
    for svc in by_kind(docs, "Service"):
        for port in svc["spec"].get("ports", []):
            if vllm_port in (port.get("port"), port.get("targetPort")):
                problems.append(f"service {svc['metadata']['name']} exposes the vLLM port")
    for w in workloads(docs):
        for c in containers(w):
            if any(p["containerPort"] == vllm_port for p in c.get("ports", [])):
                problems.append(f"{w['metadata']['name']}: declares the vLLM port")
    return problems


def scaler_problems(docs: list[Doc], *, min_replicas: int, max_replicas: int) -> list[str]:
    """A ScaledObject (redis listLength on the workers' queue) or an HPA scales the Deployment
    whose containers run the executor workers, within the configured bounds."""
    problems = []
    worker = workload_by_role(docs, "executor-worker")
    target = worker["metadata"]["name"]
    queue = effective_env(docs, pod_spec(worker)["containers"][0]).get(
        "AZR_EXECUTOR__QUEUE", "azr-executor"
    )
    scaled = by_kind(docs, "ScaledObject")
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    if len(scaled) + len(hpas) != 1:
        return [f"expected one scaler, found {len(scaled)} ScaledObject(s) and {len(hpas)} HPA(s)"]
    if scaled:
        spec = scaled[0]["spec"]
        ref = spec["scaleTargetRef"]
        bounds = (spec.get("minReplicaCount"), spec.get("maxReplicaCount"))
        triggers = [t for t in spec["triggers"] if t["type"] == "redis"]
        if not triggers:
            problems.append("ScaledObject has no redis trigger")
        for t in triggers:
            if t["metadata"].get("listName") != queue:
                problems.append(
                    f"ScaledObject watches {t['metadata'].get('listName')!r}, workers consume {queue!r}"
                )
            if not str(t["metadata"].get("listLength", "")).isdigit():
                problems.append("ScaledObject listLength is not a number")
    else:
        spec = hpas[0]["spec"]
        ref = spec["scaleTargetRef"]
        bounds = (spec.get("minReplicas"), spec.get("maxReplicas"))
    if (ref.get("kind"), ref.get("name")) != ("Deployment", target) or worker[
        "kind"
    ] != "Deployment":
        problems.append(
            f"scaler targets {ref.get('kind')}/{ref.get('name')}, workers are {worker['kind']}/{target}"
        )
    if bounds != (min_replicas, max_replicas):
        problems.append(f"scaler bounds {bounds}, values say {(min_replicas, max_replicas)}")
    if "replicas" in worker["spec"]:
        problems.append(f"{target}: fixed replicas fight the scaler")
    return problems


# --- CRDs kubernetes-validate has no schema for: minimal schemas checked by hand ----------------
# Written from the KEDA v2 and Prometheus Operator v1 CRD field lists; they cover the fields
# this chart sets and reject unknown ones at the levels we write.

_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
_META = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "labels": _LABELS,
        "annotations": _LABELS,
    },
    "additionalProperties": False,
}
_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}

CRD_SCHEMAS: dict[tuple[str, str], Doc] = {
    ("keda.sh/v1alpha1", "ScaledObject"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "kind": {"const": "ScaledObject"},
            "metadata": _META,
            "spec": {
                "type": "object",
                "required": ["scaleTargetRef", "triggers"],
                "additionalProperties": False,
                "properties": {
                    "scaleTargetRef": {
                        "type": "object",
                        "required": ["name"],
                        "additionalProperties": False,
                        "properties": {
                            "apiVersion": {"type": "string"},
                            "kind": {"type": "string"},
                            "name": {"type": "string"},
                            "envSourceContainerName": {"type": "string"},
                        },
                    },
                    "minReplicaCount": {"type": "integer", "minimum": 0},
                    "maxReplicaCount": {"type": "integer", "minimum": 1},
                    "idleReplicaCount": {"type": "integer", "minimum": 0},
                    "pollingInterval": {"type": "integer", "minimum": 1},
                    "cooldownPeriod": {"type": "integer", "minimum": 0},
                    "initialCooldownPeriod": {"type": "integer", "minimum": 0},
                    "advanced": {"type": "object"},
                    "fallback": {"type": "object"},
                    "triggers": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["type", "metadata"],
                            "additionalProperties": False,
                            "properties": {
                                "type": {"type": "string"},
                                "name": {"type": "string"},
                                "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                                "useCachedMetrics": {"type": "boolean"},
                                "metadata": _STRINGS,
                                "authenticationRef": {
                                    "type": "object",
                                    "required": ["name"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "name": {"type": "string"},
                                        "kind": {
                                            "enum": [
                                                "TriggerAuthentication",
                                                "ClusterTriggerAuthentication",
                                            ]
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
        "additionalProperties": False,
    },
    ("keda.sh/v1alpha1", "TriggerAuthentication"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "kind": {"const": "TriggerAuthentication"},
            "metadata": _META,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "secretTargetRef": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["parameter", "name", "key"],
                            "additionalProperties": False,
                            "properties": {
                                "parameter": {"type": "string"},
                                "name": {"type": "string"},
                                "key": {"type": "string"},
                            },
                        },
                    },
                    "env": {"type": "array"},
                },
            },
        },
        "additionalProperties": False,
    },
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": "ServiceMonitor"},
            "metadata": _META,
            "spec": {
                "type": "object",
                "required": ["selector", "endpoints"],
                "additionalProperties": False,
                "properties": {
                    "selector": {
                        "type": "object",
                        "properties": {"matchLabels": _LABELS},
                        "additionalProperties": False,
                    },
                    "namespaceSelector": {"type": "object"},
                    "jobLabel": {"type": "string"},
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "port": {"type": "string"},
                                "targetPort": {"type": ["string", "integer"]},
                                "path": {"type": "string"},
                                "scheme": {"enum": ["http", "https"]},
                                "interval": {"type": "string", "pattern": "^([0-9]+(ms|s|m|h))+$"},
                                "scrapeTimeout": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
        "additionalProperties": False,
    },
}


def validate_documents(docs: list[Doc]) -> list[str]:
    """kubernetes-validate --strict for built-in kinds; the hand schemas above for CRDs."""
    import jsonschema
    import kubernetes_validate

    problems = []
    for doc in docs:
        what = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        schema = CRD_SCHEMAS.get((doc.get("apiVersion", ""), doc.get("kind", "")))
        try:
            if schema is not None:
                jsonschema.validate(doc, schema)
            else:
                kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(f"{what}: {exc.message}")
        except jsonschema.ValidationError as exc:
            problems.append(f"{what}: {exc.message} at {'/'.join(map(str, exc.absolute_path))}")
    return problems
