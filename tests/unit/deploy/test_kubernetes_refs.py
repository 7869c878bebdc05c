"""The Kubernetes resources reference each other consistently: monitoring finds every pod and
carries the same alerts as Prometheus, the mutator's StatefulSet gives each worker its RocksDB
volume, and the hub's KafkaUser is allowed every topic and group the hub uses."""

from __future__ import annotations

import fnmatch
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pim_hub.ops.dead import REDRIVE_GROUP
from pim_hub.ops.exporter import known_groups
from pim_hub.services.mutator.settings import default_mutator_settings
from tests.unit.deploy.commands import load_generator
from tests.unit.deploy.kustomize import pod_specs
from tests.unit.deploy.test_kubernetes import BUILDS, ROOT, of_kind, rendered

PROM = ROOT / "infra" / "prometheus"
COMPOSE_PROMETHEUS = ROOT / "infra" / "compose" / "prometheus.yml"
WORKLOADS = ("Deployment", "StatefulSet")


def workloads(which: str) -> list[dict[str, Any]]:
    return [r for kind in WORKLOADS for r in of_kind(which, kind)]


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


@pytest.mark.parametrize("which", BUILDS)
def test_the_pod_monitor_scrapes_every_workload_on_its_metrics_port(which: str) -> None:
    (monitor,) = of_kind(which, "PodMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    for res in workloads(which):
        pod = res["spec"]["template"]
        assert matches(selector, pod["metadata"]["labels"]), res["metadata"]["name"]
        ports = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
        assert endpoint["port"] in ports, res["metadata"]["name"]
    # The job label comes from a label every pod carries.
    for res in workloads(which):
        assert monitor["spec"]["jobLabel"] in res["spec"]["template"]["metadata"]["labels"]


def test_the_service_label_is_the_same_as_on_compose() -> None:
    """The relabelling turns each pod's instance label into the Compose service name."""
    import re

    (monitor,) = of_kind("base", "PodMonitor")
    (relabel,) = monitor["spec"]["podMetricsEndpoints"][0]["relabelings"]
    assert relabel["targetLabel"] == "service"
    assert relabel["sourceLabels"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_instance"]
    names = set()
    for res in workloads("base"):
        instance = res["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/instance"]
        found = re.fullmatch(relabel["regex"], instance)
        assert found, instance
        names.add(found.expand(relabel["replacement"].replace("$1", r"\1")))
    compose = yaml.safe_load(COMPOSE_PROMETHEUS.read_text())
    assert names == set(compose["scrape_configs"][0]["dns_sd_configs"][0]["names"])


def test_the_prometheus_rule_is_the_alerts_file(tmp_path: Path) -> None:
    (rule,) = of_kind("base", "PrometheusRule")
    alerts = yaml.safe_load((PROM / "alerts.yml").read_text())
    assert rule["spec"]["groups"] == alerts["groups"]
    # The operator loads the groups as a rules file: promtool accepts them as one.
    subprocess.run([str(PROM / "ensure-prometheus.sh")], check=True, timeout=600)
    (tmp_path / "rule.yml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    done = subprocess.run(
        ["promtool", "check", "rules", "rule.yml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("which", BUILDS)
def test_every_service_selects_pods_and_the_mutator_has_its_headless_service(which: str) -> None:
    pods = [res["spec"]["template"]["metadata"]["labels"] for res in workloads(which)]
    services = {s["metadata"]["name"]: s for s in of_kind(which, "Service")}
    for svc in services.values():
        assert any(matches(svc["spec"]["selector"], p) for p in pods), svc["metadata"]["name"]
    (mutator,) = of_kind(which, "StatefulSet")
    headless = services[mutator["spec"]["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    assert matches(headless["spec"]["selector"], mutator["spec"]["template"]["metadata"]["labels"])


@pytest.mark.parametrize("which", BUILDS)
def test_each_mutator_worker_keeps_rocksdb_on_its_own_volume(which: str) -> None:
    (mutator,) = of_kind(which, "StatefulSet")
    spec = mutator["spec"]
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    (container,) = spec["template"]["spec"]["containers"]
    assert container["args"] == ["mutator", "--role", "mutate"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["HUB_MUTATOR_STORE"] == "rocksdb"
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == claim["metadata"]["name"]]
    assert env["HUB_MUTATOR_DATA_DIR"].startswith(mount["mountPath"] + "/")
    # The volume is the claim's, not a pod volume of the same name.
    assert claim["metadata"]["name"] not in {v["name"] for v in spec["template"]["spec"]["volumes"]}
    # The image can open the store: the runtime lock (what the image installs) has rocksdict.
    assert "rocksdict==" in (ROOT / "requirements" / "runtime.lock").read_text()


def _allowed(user: dict[str, Any], kind: str, name: str, operation: str) -> bool:
    for acl in user["spec"]["authorization"]["acls"]:
        res = acl["resource"]
        if res["type"] != kind or acl.get("type", "allow") != "allow":
            continue
        if kind != "cluster":
            pattern = res.get("patternType", "literal")
            if pattern == "literal" and res["name"] != name:
                continue
            if pattern == "prefix" and not name.startswith(res["name"]):
                continue
        if operation in acl["operations"] or "All" in acl["operations"]:
            return True
    return False


def test_the_kafka_user_may_use_every_topic_and_group_of_the_hub() -> None:
    mutator = default_mutator_settings()
    (user,) = of_kind("base", "KafkaUser")
    topics = [t["spec"]["topicName"] for t in of_kind("base", "KafkaTopic")]
    assert len(topics) >= 10
    for topic in topics:
        for op in ("Read", "Write", "Describe"):
            assert _allowed(user, "topic", topic, op), f"{op} on topic {topic}"
        assert not _allowed(user, "topic", topic, "Create"), "the topic operator owns topics"
    # Faust's changelog and leader topics, which it creates itself.
    changelog = mutator.changelog_topic
    assert changelog == "hub-mutator-entity-state-changelog"
    assert _allowed(user, "topic", changelog, "Create")
    groups = [
        *known_groups(load_generator().DRIVERS),
        mutator.group("fanout"),
        REDRIVE_GROUP,
    ]
    for group in groups:
        assert _allowed(user, "group", group, "Read"), f"Read on group {group}"
    assert _allowed(user, "cluster", "", "Describe")
    assert _allowed(user, "cluster", "", "IdempotentWrite")
    assert not _allowed(user, "topic", "__consumer_offsets", "Read")
    assert not fnmatch.filter(topics, "__*")


def test_the_kafka_user_belongs_to_the_cluster_and_is_the_one_the_hub_logs_in_as() -> None:
    (user,) = of_kind("production", "KafkaUser")
    clusters = {
        t["metadata"]["labels"]["strimzi.io/cluster"] for t in of_kind("production", "KafkaTopic")
    }
    assert clusters == {user["metadata"]["labels"]["strimzi.io/cluster"]}
    (config,) = of_kind("production", "ConfigMap")
    assert config["data"]["HUB_KAFKA__SASL_USERNAME"] == user["metadata"]["name"]
    assert config["data"]["HUB_KAFKA__SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert user["spec"]["authentication"]["type"] == "scram-sha-512"
    bootstrap = config["data"]["HUB_KAFKA_BOOTSTRAP"]
    assert bootstrap.startswith(
        user["metadata"]["labels"]["strimzi.io/cluster"] + "-kafka-bootstrap"
    )


def test_every_pod_in_production_mounts_the_cluster_ca() -> None:
    for res in rendered("production"):
        for pod in pod_specs(res):
            volumes = {v["name"]: v for v in pod["volumes"]}
            assert volumes["kafka-ca"]["secret"]["secretName"] == "pim-hub-cluster-ca-cert"


@pytest.mark.parametrize("which", BUILDS)
def test_the_console_reads_users_and_session_key_from_its_secret_behind_a_service(
    which: str,
) -> None:
    gen = load_generator()
    deployments = {d["metadata"]["name"]: d for d in of_kind(which, "Deployment")}
    console = deployments["hub-console"]
    assert console["spec"]["replicas"] == 1  # a replay's progress lives in its process
    (container,) = console["spec"]["template"]["spec"]["containers"]
    want = ["console", "--host", "0.0.0.0", "--port", str(gen.CONSOLE_PORT)]  # noqa: S104
    assert container["args"] == want
    secrets = [e["secretRef"]["name"] for e in container["envFrom"] if "secretRef" in e]
    assert secrets == ["hub-secrets", gen.CONSOLE_SECRET]
    assert {"name": "http", "containerPort": gen.CONSOLE_PORT} in container["ports"]
    services = {s["metadata"]["name"]: s for s in of_kind(which, "Service")}
    ports = {p["name"]: p for p in services["hub-console"]["spec"]["ports"]}
    assert ports["http"] == {"name": "http", "port": gen.CONSOLE_PORT, "targetPort": "http"}
    labels = console["spec"]["template"]["metadata"]["labels"]
    assert matches(services["hub-console"]["spec"]["selector"], labels)
    # No literal secret in the manifests: the Secret is created outside Git.
    assert not [
        r
        for r in rendered(which)
        if r["kind"] == "Secret" and r["metadata"]["name"] == "hub-console"
    ]
