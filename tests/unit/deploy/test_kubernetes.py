"""The Kustomize base and overlay: valid manifests, real commands, scaling by consumer lag."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from pim_hub.schemas.topics import PRIORITIES, job_topic
from pim_hub.services.dispatcher.app import group_id
from tests.unit.deploy.commands import EXPECTED_COMMANDS, load_generator, resolve
from tests.unit.deploy.kustomize import build, pod_specs

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "infra" / "k8s"
SCHEMAS = Path(__file__).parent / "schemas"
KUBERNETES_VERSION = "1.33"
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda-scaledobject-v1alpha1.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda-triggerauthentication-v1alpha1.json",
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): "strimzi-kafkatopic-v1beta2.json",
    ("kafka.strimzi.io/v1beta2", "KafkaUser"): "strimzi-kafkauser-v1beta2.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "prometheus-operator-podmonitor-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheus-operator-prometheusrule-v1.json",
}
#: Parameters of KEDA's Kafka scaler (its metadata is free-form in the CRD).
KEDA_KAFKA_PARAMETERS = {
    "bootstrapServers",
    "consumerGroup",
    "topic",
    "lagThreshold",
    "activationLagThreshold",
    "offsetResetPolicy",
    "allowIdleConsumers",
    "scaleToZeroOnInvalidOffset",
    "excludePersistentLag",
    "limitToPartitionsWithLag",
    "ensureEvenDistributionOfPartitions",
    "partitionLimitation",
    "version",
    "sasl",
    "tls",
}


@cache
def rendered(which: str) -> tuple[dict[str, Any], ...]:
    path = K8S / "base" if which == "base" else K8S / "overlays" / which
    return tuple(build(path))


def of_kind(which: str, kind: str) -> list[dict[str, Any]]:
    return [r for r in rendered(which) if r["kind"] == kind]


BUILDS = ["base", "production"]


def test_generated_base_files_match_the_generator() -> None:
    gen = load_generator()
    for name, text in gen.generated_files().items():
        assert (K8S / "base" / name).read_text() == text, (
            f"infra/k8s/base/{name} is stale: run `python infra/k8s/generate.py`"
        )


@pytest.mark.parametrize("which", BUILDS)
def test_builtin_resources_validate_against_kubernetes_schemas(which: str) -> None:
    checked = 0
    for res in rendered(which):
        if (res["apiVersion"], res["kind"]) in CRD_SCHEMAS:
            continue
        kubernetes_validate.validate(res, KUBERNETES_VERSION, strict=True)
        checked += 1
    assert checked >= 20


def test_kubernetes_validate_rejects_an_unknown_field() -> None:
    deploy = json.loads(json.dumps(of_kind("base", "Deployment")[0]))
    deploy["spec"]["template"]["spec"]["containers"][0]["argz"] = ["x"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deploy, KUBERNETES_VERSION, strict=True)


def _crd_validator(api_version: str, kind: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / CRD_SCHEMAS[(api_version, kind)]).read_text())
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("which", BUILDS)
def test_keda_and_strimzi_resources_validate_against_their_crd_schemas(which: str) -> None:
    checked = 0
    for res in rendered(which):
        key = (res["apiVersion"], res["kind"])
        if key not in CRD_SCHEMAS:
            continue
        errors = list(_crd_validator(*key).iter_errors(res))
        assert not errors, f"{res['kind']}/{res['metadata']['name']}: {errors[0].message}"
        checked += 1
    assert checked >= len(PRIORITIES) * 2 + 13


def test_crd_schemas_reject_a_misspelt_field() -> None:
    so = json.loads(json.dumps(of_kind("base", "ScaledObject")[0]))
    so["spec"]["maxReplicas"] = 3
    assert list(_crd_validator("keda.sh/v1alpha1", "ScaledObject").iter_errors(so))
    topic = json.loads(json.dumps(of_kind("base", "KafkaTopic")[0]))
    topic["spec"]["replicas"] = 0
    assert list(_crd_validator("kafka.strimzi.io/v1beta2", "KafkaTopic").iter_errors(topic))
    (user,) = json.loads(json.dumps(of_kind("base", "KafkaUser")))
    user["spec"]["authorization"]["acls"][0]["operations"] = ["Reed"]
    assert list(_crd_validator("kafka.strimzi.io/v1beta2", "KafkaUser").iter_errors(user))
    (monitor,) = json.loads(json.dumps(of_kind("base", "PodMonitor")))
    monitor["spec"]["podMetricEndpoints"] = monitor["spec"].pop("podMetricsEndpoints")
    assert list(_crd_validator("monitoring.coreos.com/v1", "PodMonitor").iter_errors(monitor))
    (rule,) = json.loads(json.dumps(of_kind("base", "PrometheusRule")))
    rule["spec"]["groups"][0]["rules"][0]["for"] = "five minutes"
    assert list(_crd_validator("monitoring.coreos.com/v1", "PrometheusRule").iter_errors(rule))


def _hub_args(which: str) -> list[tuple[str, list[str]]]:
    out = []
    for res in rendered(which):
        for pod in pod_specs(res):
            for c in [*pod.get("containers", []), *pod.get("initContainers", [])]:
                if "pim-hub" in c["image"]:
                    out.append((f"{res['metadata']['name']}/{c['name']}", c["args"]))
    return out


@pytest.mark.parametrize("name,args", _hub_args("production"), ids=lambda v: str(v))
def test_every_container_runs_a_real_hub_command(name: str, args: list[str]) -> None:
    resolve(args)


def test_every_expected_command_runs_somewhere() -> None:
    runs = [tuple(a) for _, a in _hub_args("base")]
    for expected in EXPECTED_COMMANDS:
        if expected == ("topics", "apply"):
            continue  # Strimzi's topic operator owns the topics on Kubernetes
        assert any(r[: len(expected)] == expected for r in runs), f"nothing runs {expected}"


@pytest.mark.parametrize("which", BUILDS)
def test_every_deployment_has_probes_resources_security_and_a_pdb(which: str) -> None:
    pdbs = of_kind(which, "PodDisruptionBudget")
    for deploy in [*of_kind(which, "Deployment"), *of_kind(which, "StatefulSet")]:
        pod = deploy["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for c in pod["containers"]:
            name = deploy["metadata"]["name"]
            # The loop's own liveness and the service's readiness, never /metrics (served by
            # a thread of its own, it answers while the loop is stuck).
            assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}, name
            assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}, name
            assert c["startupProbe"]["httpGet"]["path"] == "/healthz", name
            assert {"name": "metrics", "containerPort": 9100} in c["ports"], name
            assert {"cpu", "memory"} <= set(c["resources"]["requests"])
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
        labels = deploy["spec"]["template"]["metadata"]["labels"]
        covering = [
            p for p in pdbs if p["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert len(covering) == 1, f"{deploy['metadata']['name']}: {len(covering)} PDBs"


def test_each_dispatcher_group_scales_on_its_own_lag() -> None:
    gen = load_generator()
    partitions = gen.default_settings().topic_partitions
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in of_kind("base", "ScaledObject")}
    deployments = {d["metadata"]["name"]: d for d in of_kind("base", "Deployment")}
    for driver in gen.DRIVERS:
        for priority in PRIORITIES:
            name = f"hub-dispatcher-{driver}-{priority}"
            assert name in deployments
            args = deployments[name]["spec"]["template"]["spec"]["containers"][0]["args"]
            assert args == ["dispatcher", "--driver", driver, "--priority", priority]
            so = scaled[name]["spec"]
            (trigger,) = so["triggers"]
            assert trigger["type"] == "kafka"
            meta = trigger["metadata"]
            assert set(meta) <= KEDA_KAFKA_PARAMETERS
            assert all(isinstance(v, str) for v in meta.values())
            assert meta["consumerGroup"] == group_id(driver, priority)
            assert meta["topic"] == job_topic(priority)
            # More consumers than partitions would sit idle.
            assert 1 <= so["minReplicaCount"] <= so["maxReplicaCount"] <= partitions
    assert len(scaled) == len(gen.DRIVERS) * len(PRIORITIES)


def test_production_overlay_secures_kafka_and_pins_the_image() -> None:
    prod = rendered("production")
    assert {r["metadata"].get("namespace") for r in prod} == {"pim-hub"}
    (config,) = of_kind("production", "ConfigMap")
    assert config["data"]["HUB_KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL"
    assert config["data"]["HUB_KAFKA__SASL_MECHANISM"] in ("SCRAM-SHA-512", "SCRAM-SHA-256")
    for _, args in _hub_args("production"):
        assert args  # every hub container still runs a command
    for res in prod:
        for pod in pod_specs(res):
            for c in pod["containers"]:
                assert c["image"] == "registry.example.com/pim-hub:0.1.0"
                mounts = {m["mountPath"] for m in c["volumeMounts"]}
                assert "/etc/kafka-ca" in mounts
    (auth,) = of_kind("production", "TriggerAuthentication")
    for so in of_kind("production", "ScaledObject"):
        assert so["spec"]["triggers"][0]["authenticationRef"]["name"] == auth["metadata"]["name"]
    (mutator,) = of_kind("production", "StatefulSet")
    assert mutator["metadata"]["name"] == "hub-mutator"
    assert mutator["spec"]["replicas"] == 3
