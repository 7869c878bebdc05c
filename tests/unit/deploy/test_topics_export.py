"""Strimzi KafkaTopics, `hub topics apply` and the catalogue agree: one source of truth."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pim_hub.ops.topics_export import kafka_topics, main, render
from pim_hub.runtime.kafka import TOPIC_PROFILES, profile_catalogue, profile_replication
from pim_hub.runtime.settings import Settings
from pim_hub.schemas.topics import catalogue

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "infra" / "k8s" / "base" / "kafka-topics.yaml"


def test_committed_kafka_topics_are_the_catalogue_with_the_production_profile() -> None:
    docs = [d for d in yaml.safe_load_all(COMMITTED.read_text()) if d]
    # Compared with pim_hub.schemas.topics.catalogue directly, not through the exporter.
    specs = {s.name: s for s in catalogue()}
    assert [d["spec"]["topicName"] for d in docs] == [s.name for s in catalogue()]
    for doc in docs:
        spec = specs[doc["spec"]["topicName"]]
        assert doc["kind"] == "KafkaTopic"
        assert doc["metadata"]["labels"]["strimzi.io/cluster"] == "pim-hub"
        assert doc["spec"]["partitions"] == spec.partitions
        assert doc["spec"]["replicas"] == 3
        assert doc["spec"]["config"] == {**spec.configs(), "min.insync.replicas": "2"}


def test_exporter_follows_the_deployment_settings() -> None:
    settings = Settings.model_construct(topic_partitions=12, retry_delays_s=[5, 60])
    topics = kafka_topics(settings, profile="default", cluster="c1", namespace="ns")
    names = [t["spec"]["topicName"] for t in topics]
    assert "hub.jobs.retry.5s" in names and "hub.jobs.retry.30s" not in names
    jobs = next(t for t in topics if t["spec"]["topicName"] == "hub.jobs.normal")
    assert jobs["spec"]["partitions"] == 12
    assert jobs["spec"]["replicas"] == settings.topic_replication
    assert "min.insync.replicas" not in jobs["spec"]["config"]
    assert jobs["metadata"] == {
        "name": "hub.jobs.normal",
        "namespace": "ns",
        "labels": {"strimzi.io/cluster": "c1", "app.kubernetes.io/part-of": "pim-hub"},
        "annotations": {"pim-hub/doc": "jobs of priority normal (Avro Job)"},
    }


def test_production_profile_is_replication_3_and_min_isr_2() -> None:
    settings = Settings.model_construct()
    assert profile_replication(settings, "production") == 3
    assert profile_replication(settings, "default") == settings.topic_replication
    for spec in profile_catalogue(settings, "production"):
        assert spec.configs()["min.insync.replicas"] == "2"
    assert all("min.insync.replicas" not in s.configs() for s in profile_catalogue(settings))
    assert set(TOPIC_PROFILES) == {"default", "production"}


def test_an_unknown_profile_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown topic profile 'staging'"):
        profile_catalogue(Settings.model_construct(), "staging")


def test_the_command_writes_parseable_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_TOPIC_PARTITIONS", "3")
    out = tmp_path / "topics.yaml"
    assert main(["--output", str(out), "--cluster", "kc"]) == 0
    docs = [d for d in yaml.safe_load_all(out.read_text()) if d]
    assert len(docs) == len(catalogue())
    assert {d["spec"]["partitions"] for d in docs} == {1, 3}
    assert out.read_text() == render(kafka_topics(Settings(), cluster="kc"))
