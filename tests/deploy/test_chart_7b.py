"""The 7B profile (values-7b.yaml): lint, offline schema validation, and what it promises: the
trainer as torchrun ranks over 4 GPUs in a StatefulSet, 2 inference replicas the gateway
addresses one by one, vLLM's parallelism settings, one ReadWriteMany checkpoint volume."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.deploy import manifests as m

pytestmark = pytest.mark.skipif(m.helm_binary() is None, reason="helm not installed (make setup)")


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return m.render(values=[m.SEVEN_B_VALUES])


def env_of(docs: list[dict[str, Any]], role: str) -> dict[str, str]:
    return m.effective_env(docs, m.pod_spec(m.workload_by_role(docs, role))["containers"][0])


def test_lint_strict_and_schemas(docs: list[dict[str, Any]]) -> None:
    result = m.helm("lint", "--strict", str(m.CHART), "-f", str(m.SEVEN_B_VALUES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert m.validate_documents(docs) == []
    # The security and probe properties of the default profile hold here too.
    assert m.security_problems(docs) == []
    assert m.probe_and_resource_problems(docs) == []
    assert m.gvisor_problems(docs) == []


def test_trainer_runs_torchrun_over_its_gpus(docs: list[dict[str, Any]]) -> None:
    trainer = m.workload_by_role(docs, "trainer")
    assert trainer["kind"] == "StatefulSet" and trainer["spec"]["replicas"] == 1
    c = m.pod_spec(trainer)["containers"][0]
    argv = c["command"] + c["args"]
    assert argv[argv.index("-m") + 1] == "torch.distributed.run"
    ranks = int(next(a for a in argv if a.startswith("--nproc-per-node=")).split("=")[1])
    assert ranks == 4 == c["resources"]["limits"]["nvidia.com/gpu"]
    assert argv[argv.index("services.cli") + 1 :][:2] == ["serve", "trainer"]
    assert env_of(docs, "trainer")["AZR_TRAINER__ACTIVATION_CHECKPOINTING"] == "true"


def test_inference_replicas_are_addressed_one_by_one(docs: list[dict[str, Any]]) -> None:
    inference = m.workload_by_role(docs, "inference")
    assert inference["kind"] == "StatefulSet" and inference["spec"]["replicas"] == 2
    name = inference["metadata"]["name"]
    services = {s["metadata"]["name"]: s for s in m.by_kind(docs, "Service")}
    headless = services[inference["spec"]["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    assert m.matches({"matchLabels": headless["spec"]["selector"]}, m.pod_labels(inference))
    urls = json.loads(env_of(docs, "gateway")["AZR_INFERENCE__REPLICA_URLS"])
    port = headless["spec"]["ports"][0]["port"]
    assert urls == [
        f"http://{name}-{i}.{headless['metadata']['name']}.default.svc:{port}" for i in range(2)
    ]
    env = env_of(docs, "inference")
    tp, dp = (
        int(env["AZR_INFERENCE__TENSOR_PARALLEL_SIZE"]),
        int(env["AZR_INFERENCE__DATA_PARALLEL_SIZE"]),
    )
    gpus = m.pod_spec(inference)["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
    assert tp * dp == gpus == 1
    assert 0 < float(env["AZR_INFERENCE__GPU_MEMORY_UTILIZATION"]) <= 0.95


def test_one_shared_readwritemany_checkpoint_volume(docs: list[dict[str, Any]]) -> None:
    (pvc,) = m.by_kind(docs, "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    for role in ("trainer", "inference"):
        volumes = m.pod_spec(m.workload_by_role(docs, role))["volumes"]
        claims = [
            v["persistentVolumeClaim"]["claimName"] for v in volumes if "persistentVolumeClaim" in v
        ]
        assert claims == [pvc["metadata"]["name"]]


def test_default_profile_keeps_one_inference_deployment_without_replica_urls() -> None:
    docs = m.render()
    assert m.workload_by_role(docs, "inference")["kind"] == "Deployment"
    assert "AZR_INFERENCE__REPLICA_URLS" not in env_of(docs, "gateway")
    trainer = m.pod_spec(m.workload_by_role(docs, "trainer"))["containers"][0]
    assert "command" not in trainer  # the image's `azr serve trainer`, one process
