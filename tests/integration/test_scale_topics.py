"""`hub topics apply --profile production` against the real broker."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import ConfigResource  # type: ignore[attr-defined]

from pim_hub.runtime.kafka import admin_client, apply_topics
from pim_hub.runtime.settings import Settings
from pim_hub.schemas.topics import DAY_MS, TopicSpec

pytestmark = pytest.mark.integration


def _configs(settings: Settings, topic: str) -> dict[str, str]:
    resource = ConfigResource("topic", topic)
    admin = admin_client(settings)  # kept referenced until the answer is in
    described = admin.describe_configs([resource])[resource].result(timeout=10)
    return {k: v.value for k, v in described.items()}


def test_production_profile_creates_topics_with_min_insync_replicas_2(
    hub_settings: Settings, unique: str
) -> None:
    spec = TopicSpec(f"test.profile.{unique}", 2, DAY_MS)
    report = apply_topics(hub_settings, [spec], profile="production")
    assert report.created == [spec.name]
    assert _configs(hub_settings, spec.name)["min.insync.replicas"] == "2"


def test_a_topic_with_too_few_replicas_is_reported_not_changed(
    hub_settings: Settings, unique: str
) -> None:
    spec = TopicSpec(f"test.profile.low.{unique}", 2, DAY_MS)
    assert apply_topics(hub_settings, [spec]).created == [spec.name]  # replication 1
    report = apply_topics(hub_settings, [spec], profile="production")
    assert report.drift == [f"{spec.name}: replication 1 (profile production wants 3)"]
    assert report.created == [] and spec.name not in report.updated
