"""The Helm chart: lint, offline schema validation, and the security and scaling properties of
the rendered manifests, for the default values, the GPU values file and an all-options render.
Each property check is also shown to fail on a render (or an edit) that breaks it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import manifests as m

pytestmark = pytest.mark.skipif(m.helm_binary() is None, reason="helm not installed (make setup)")

FULL_SETS = [
    "redis.bundled.enabled=true",
    "postgresql.bundled.enabled=true",
    "metrics.serviceMonitor.enabled=true",
    "executorWorker.autoscaling.keda.passwordSecret.name=redis-auth",
    "executorWorker.autoscaling.keda.passwordSecret.key=password",
]
KEDA_API = ["keda.sh/v1alpha1"]


@pytest.fixture(scope="module")
def default_docs() -> list[dict[str, Any]]:
    return m.render()


@pytest.fixture(scope="module")
def gpu_docs() -> list[dict[str, Any]]:
    return m.render(values=[m.GPU_VALUES])


@pytest.fixture(scope="module")
def full_docs() -> list[dict[str, Any]]:
    """GPU values, bundled Redis and PostgreSQL, KEDA present, ServiceMonitors, Redis auth."""
    return m.render(values=[m.GPU_VALUES], sets=FULL_SETS, api_versions=KEDA_API)


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return dict(yaml.safe_load((m.CHART / "values.yaml").read_text()))


@pytest.fixture(scope="module")
def gpu_values() -> dict[str, Any]:
    return dict(yaml.safe_load(m.GPU_VALUES.read_text()))


RENDERS = ["default_docs", "gpu_docs", "full_docs"]


@pytest.mark.parametrize("extra", [[], ["-f", str(m.GPU_VALUES)]], ids=["default", "gpu"])
def test_helm_lint_strict(extra: list[str]) -> None:
    result = m.helm("lint", "--strict", str(m.CHART), *extra)
    assert result.returncode == 0, result.stdout + result.stderr


def test_renders_every_component(
    default_docs: list[dict[str, Any]], full_docs: list[dict[str, Any]]
) -> None:
    roles = {m.role(w) for w in m.workloads(default_docs)}
    assert roles == {"gateway", "inference", "executor", "executor-worker", "trainer"}
    full_roles = {m.role(w) for w in m.workloads(full_docs)}
    assert full_roles == roles | {"redis", "postgresql"}
    kinds = {d["kind"] for d in default_docs}
    assert {"Secret", "PersistentVolumeClaim", "RuntimeClass", "NetworkPolicy", "Service"} <= kinds
    assert {m.workload_by_role(full_docs, r)["kind"] for r in ("redis", "postgresql")} == {
        "StatefulSet"
    }


@pytest.mark.parametrize("render", RENDERS)
def test_manifests_validate_offline(render: str, request: pytest.FixtureRequest) -> None:
    docs = request.getfixturevalue(render)
    assert m.validate_documents(docs) == []


def test_crd_schemas_catch_mistakes(full_docs: list[dict[str, Any]]) -> None:
    docs = m.mutated([d for d in full_docs if d["kind"] in ("ScaledObject", "ServiceMonitor")])
    docs[0]["spec"]["maxReplicas"] = 3  # the HPA field name, not KEDA's
    docs[1]["spec"]["endpoints"][0]["interval"] = "often"
    problems = m.validate_documents(docs)
    assert len(problems) == 2, problems


@pytest.mark.parametrize("render", RENDERS)
def test_untrusted_code_runs_under_gvisor(render: str, request: pytest.FixtureRequest) -> None:
    docs = request.getfixturevalue(render)
    assert m.gvisor_problems(docs) == []
    runtime_class = m.by_kind(docs, "RuntimeClass")
    assert [rc["handler"] for rc in runtime_class] == ["runsc"]


def test_gvisor_check_fails_when_disabled() -> None:
    docs = m.render(sets=["gvisor.enabled=false"])
    problems = m.gvisor_problems(docs)
    assert len(problems) == 2 and all("without runtimeClassName" in p for p in problems)


def test_runtimeclass_creation_is_optional() -> None:
    docs = m.render(sets=["gvisor.createRuntimeClass=false"])
    assert m.by_kind(docs, "RuntimeClass") == []
    assert m.gvisor_problems(docs) == []


@pytest.mark.parametrize("render", RENDERS)
def test_no_container_runs_as_root(render: str, request: pytest.FixtureRequest) -> None:
    assert m.security_problems(request.getfixturevalue(render)) == []


def test_security_check_fails_on_root_and_writable_root() -> None:
    docs = m.render(
        sets=[
            "containerSecurityContext.runAsUser=0",
            "containerSecurityContext.readOnlyRootFilesystem=false",
        ]
    )
    problems = m.security_problems(docs)
    assert any("runAsUser 0" in p for p in problems)
    assert any("root filesystem is writable" in p for p in problems)
    broken = m.mutated(m.render())
    m.pod_spec(m.workload_by_role(broken, "executor-worker"))["automountServiceAccountToken"] = True
    assert any("service-account token" in p for p in m.security_problems(broken))


@pytest.mark.parametrize("render", RENDERS)
def test_every_container_has_probes_and_limits(render: str, request: pytest.FixtureRequest) -> None:
    assert m.probe_and_resource_problems(request.getfixturevalue(render)) == []


def test_probe_check_fails_without_limits_or_probes(default_docs: list[dict[str, Any]]) -> None:
    docs = m.render(sets=["trainer.resources.limits=null"])
    assert any("trainer/trainer: no limits" in p for p in m.probe_and_resource_problems(docs))
    broken = m.mutated(default_docs)
    del m.pod_spec(m.workload_by_role(broken, "gateway"))["containers"][0]["readinessProbe"]
    assert m.probe_and_resource_problems(broken) == ["azr-gateway/gateway: no readinessProbe"]


@pytest.mark.parametrize("render", RENDERS)
def test_network_policies_select_what_they_claim(
    render: str, request: pytest.FixtureRequest
) -> None:
    assert m.network_policy_problems(request.getfixturevalue(render)) == []


def test_network_policy_check_catches_wrong_selectors(full_docs: list[dict[str, Any]]) -> None:
    # A worker policy that selects the gateway's pods leaves the workers unconstrained.
    broken = m.mutated(full_docs)
    pol = next(
        p
        for p in m.by_kind(broken, "NetworkPolicy")
        if p["metadata"]["name"] == "azr-executor-worker"
    )
    pol["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] = "gateway"
    problems = m.network_policy_problems(broken)
    assert any(p.startswith("azr-executor-worker: selects ['gateway']") for p in problems)
    assert "executor-worker: no NetworkPolicy allows its traffic" in problems
    # An executor that may reach PostgreSQL, and inference open to the trainer's peer label typo.
    broken = m.mutated(full_docs)
    pol = next(
        p for p in m.by_kind(broken, "NetworkPolicy") if p["metadata"]["name"] == "azr-executor"
    )
    pol["spec"]["egress"].append({"ports": [{"port": 5432, "protocol": "TCP"}]})
    pol["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"][
        "app.kubernetes.io/component"
    ] = "gatewey"
    problems = m.network_policy_problems(broken)
    assert "azr-executor: egress to ports [5432]" in problems
    assert "azr-executor: ingress peer selects no pod" in problems


def test_vllm_port_is_never_exposed(full_docs: list[dict[str, Any]]) -> None:
    broken = m.mutated(full_docs)
    svc = next(s for s in m.by_kind(broken, "Service") if s["metadata"]["name"] == "azr-inference")
    svc["spec"]["ports"].append({"name": "vllm", "port": 8300, "targetPort": 8300})
    assert "service azr-inference exposes the vLLM port" in m.network_policy_problems(broken)
    inference = m.workload_by_role(full_docs, "inference")
    env = m.effective_env(full_docs, m.pod_spec(inference)["containers"][0])
    assert env["AZR_INFERENCE__VLLM_PORT"] == "8300"


def test_executor_pods_reach_only_redis(full_docs: list[dict[str, Any]]) -> None:
    """With Redis bundled the executor pods' egress names the Redis pods and DNS, nothing else."""
    for name in ("azr-executor", "azr-executor-worker"):
        pol = next(
            p for p in m.by_kind(full_docs, "NetworkPolicy") if p["metadata"]["name"] == name
        )
        ports = sorted(p["port"] for rule in pol["spec"]["egress"] for p in rule["ports"])
        assert ports == [53, 53, 6379]


def test_hpa_scales_executor_workers_without_keda(
    default_docs: list[dict[str, Any]], values: dict[str, Any]
) -> None:
    bounds = values["executorWorker"]["autoscaling"]
    assert m.by_kind(default_docs, "ScaledObject") == []
    assert (
        m.scaler_problems(
            default_docs, min_replicas=bounds["minReplicas"], max_replicas=bounds["maxReplicas"]
        )
        == []
    )


def test_keda_scales_executor_workers_on_their_queue(
    full_docs: list[dict[str, Any]], gpu_values: dict[str, Any]
) -> None:
    bounds = gpu_values["executorWorker"]["autoscaling"]
    assert m.by_kind(full_docs, "HorizontalPodAutoscaler") == []
    assert (
        m.scaler_problems(
            full_docs, min_replicas=bounds["minReplicas"], max_replicas=bounds["maxReplicas"]
        )
        == []
    )
    trigger = m.by_kind(full_docs, "ScaledObject")[0]["spec"]["triggers"][0]
    assert trigger["metadata"]["address"] == "azr-redis:6379"
    assert (
        trigger["authenticationRef"]["name"]
        == m.by_kind(full_docs, "TriggerAuthentication")[0]["metadata"]["name"]
    )


def test_keda_address_comes_from_external_url() -> None:
    docs = m.render(
        sets=[
            "redis.url=redis://cache.example.internal:6380/3",
            "executorWorker.autoscaling.keda.enabled=true",
        ]
    )
    meta = m.by_kind(docs, "ScaledObject")[0]["spec"]["triggers"][0]["metadata"]
    assert (meta["address"], meta["databaseIndex"]) == ("cache.example.internal:6380", "3")


def test_scaler_check_fails_on_queue_mismatch_and_wrong_target(
    full_docs: list[dict[str, Any]],
) -> None:
    docs = m.render(
        values=[m.GPU_VALUES],
        sets=["executorWorker.env.AZR_EXECUTOR__QUEUE=other"],
        api_versions=KEDA_API,
    )
    problems = m.scaler_problems(docs, min_replicas=2, max_replicas=50)
    assert problems == ["ScaledObject watches 'azr-executor', workers consume 'other'"]
    broken = m.mutated(full_docs)
    m.by_kind(broken, "ScaledObject")[0]["spec"]["scaleTargetRef"]["name"] = "azr-executor"
    assert any(
        "scaler targets Deployment/azr-executor" in p
        for p in m.scaler_problems(broken, min_replicas=2, max_replicas=50)
    )
    assert any("bounds" in p for p in m.scaler_problems(full_docs, min_replicas=1, max_replicas=50))


def test_gpu_values_request_gpus_and_pick_gpu_nodes(
    gpu_docs: list[dict[str, Any]], default_docs: list[dict[str, Any]]
) -> None:
    for name in ("inference", "trainer"):
        spec = m.pod_spec(m.workload_by_role(gpu_docs, name))
        c = spec["containers"][0]
        assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert c["image"].endswith(f"azr-{name}-gpu:0.1.0")
        assert spec["nodeSelector"] and spec["tolerations"]
        default_c = m.pod_spec(m.workload_by_role(default_docs, name))["containers"][0]
        assert "nvidia.com/gpu" not in default_c["resources"]["limits"]
    assert (
        m.effective_env(
            gpu_docs, m.pod_spec(m.workload_by_role(gpu_docs, "inference"))["containers"][0]
        )["AZR_INFERENCE__DEVICE"]
        == "cuda"
    )


def test_checkpoint_volume_is_shared_by_trainer_and_inference(
    default_docs: list[dict[str, Any]],
) -> None:
    pvc = m.by_kind(default_docs, "PersistentVolumeClaim")[0]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    mounts = {}
    for name in ("trainer", "inference"):
        spec = m.pod_spec(m.workload_by_role(default_docs, name))
        claims = {
            v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in spec["volumes"]
            if "persistentVolumeClaim" in v
        }
        (mount,) = [mt for mt in spec["containers"][0]["volumeMounts"] if mt["name"] in claims]
        env = m.effective_env(default_docs, spec["containers"][0])
        assert mount["mountPath"] == env["AZR_DATA_DIR"]
        mounts[name] = claims[mount["name"]]
    assert mounts == {"trainer": pvc["metadata"]["name"], "inference": pvc["metadata"]["name"]}


def test_services_find_each_other_and_secrets(default_docs: list[dict[str, Any]]) -> None:
    """The URLs in the ConfigMap name rendered Services on the right ports; secrets are refs."""
    services = {s["metadata"]["name"]: s for s in m.by_kind(default_docs, "Service")}
    gateway = m.pod_spec(m.workload_by_role(default_docs, "gateway"))["containers"][0]
    env = m.effective_env(default_docs, gateway)
    for key, target in [
        ("AZR_EXECUTOR__URL", "executor"),
        ("AZR_INFERENCE__PROPOSER_URL", "inference"),
        ("AZR_INFERENCE__SOLVER_URL", "inference"),
    ]:
        host, port = env[key].removeprefix("http://").split(":")
        svc = services[host]
        assert int(port) in [p["port"] for p in svc["spec"]["ports"]]
        selected = {
            m.role(w)
            for w in m.workloads(default_docs)
            if m.matches({"matchLabels": svc["spec"]["selector"]}, m.pod_labels(w))
        }
        assert selected == {target}
    secret_refs = {e["name"] for e in gateway["env"] if "valueFrom" in e}
    assert secret_refs == {
        "AZR_REDIS_URL",
        "AZR_DATABASE_URL",
        "AZR_API_TOKEN",
        "AZR_SERVICE_TOKEN",
    }
    worker = m.pod_spec(m.workload_by_role(default_docs, "executor-worker"))["containers"][0]
    assert {e["name"] for e in worker["env"] if "valueFrom" in e} == {"AZR_REDIS_URL"}
    # the services that listen beyond loopback with data routes get the service token
    for role in ("executor", "inference"):
        c = m.pod_spec(m.workload_by_role(default_docs, role))["containers"][0]
        assert "AZR_SERVICE_TOKEN" in {e["name"] for e in c["env"] if "valueFrom" in e}


def test_prometheus_annotations_point_at_the_metrics_port(
    default_docs: list[dict[str, Any]],
) -> None:
    scraped = set()
    for w in m.workloads(default_docs):
        ann = w["spec"]["template"]["metadata"]["annotations"]
        c = m.pod_spec(w)["containers"][0]
        if "prometheus.io/scrape" not in ann:
            continue
        scraped.add(m.role(w))
        assert ann["prometheus.io/path"] == "/metrics"
        assert int(ann["prometheus.io/port"]) in [p["containerPort"] for p in c["ports"]]
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # The Celery workers serve no HTTP; the executor API exports the queue depth.
    assert scraped == {"gateway", "inference", "executor", "trainer"}
    worker = m.pod_spec(m.workload_by_role(default_docs, "executor-worker"))["containers"][0]
    assert "ports" not in worker and "exec" in worker["livenessProbe"]


def render_notes(tmp_path: Path, *sets: str) -> str:
    """NOTES.txt rendered by helm itself: `helm template` skips NOTES, so a copy of the chart
    wraps the same text in a ConfigMap template."""
    chart = tmp_path / "azr"
    shutil.copytree(m.CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "zz-notes.yaml").write_text(
        '{{- define "test.notes" -}}\n' + notes + "\n{{- end -}}\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        'data: {notes: {{ include "test.notes" . | quote }}}\n'
    )
    args = [
        "template",
        "azr",
        str(chart),
        "--kube-version",
        m.KUBE_VERSION,
        "--show-only",
        "templates/zz-notes.yaml",
    ]
    for item in sets:
        args += ["--set", item]
    result = m.helm(*args)
    assert result.returncode == 0, result.stderr
    return str(yaml.safe_load(result.stdout)["data"]["notes"])


def test_notes_explain_how_to_reach_the_gateway_and_start_a_run(tmp_path: Path) -> None:
    notes = render_notes(tmp_path / "a")
    assert "port-forward svc/azr-gateway 8000:80" in notes
    assert "get secret azr -o jsonpath='{.data.api-token}'" in notes
    assert "/v1/runs" in notes and "an HPA scales them on CPU between 1 and 20" in notes
    assert "redis.url is the chart's placeholder" in notes
    bundled = render_notes(
        tmp_path / "b",
        "redis.bundled.enabled=true",
        "postgresql.bundled.enabled=true",
        "executorWorker.autoscaling.keda.enabled=true",
    )
    assert "placeholder" not in bundled
    assert 'KEDA scales them on the length of queue "azr-executor"' in bundled
