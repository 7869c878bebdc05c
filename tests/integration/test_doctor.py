"""`hub doctor` against the real broker: missing topics, wrong partitions, denied ACLs, no broker."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import Future
from typing import Any

from confluent_kafka import TopicCollection
from confluent_kafka.admin import AclOperation, AdminClient, NewTopic  # type: ignore[attr-defined]

from pim_hub.devstack.embedded import free_port
from pim_hub.ops.doctor import diagnose
from pim_hub.runtime.settings import Settings
from pim_hub.schemas.topics import TopicSpec
from pim_hub.services.mutator.settings import MutatorSettings


def _create(settings: Settings, name: str, partitions: int) -> None:
    admin = AdminClient(settings.kafka_config())
    for fut in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        fut.result()


def test_doctor_reports_a_missing_topic_and_a_wrong_partition_count(
    hub_settings: Settings, unique: str
) -> None:
    good, wrong, missing = (f"doctor.{unique}.{n}" for n in ("good", "wrong", "missing"))
    _create(hub_settings, good, 3)
    _create(hub_settings, wrong, 2)
    specs = [TopicSpec(good, 3, 86_400_000), TopicSpec(wrong, 3, 86_400_000)]
    specs.append(TopicSpec(missing, 3, 86_400_000))

    report = diagnose(hub_settings, specs=specs, drivers=["webhook"])

    assert not report.ok
    assert [f.status for f in report.by("connect")] == ["ok"]
    (gone,) = report.by("topic", missing)
    assert (gone.status, gone.detail) == ("fail", "missing")
    assert "hub topics apply" in gone.fix
    (bad,) = report.by("topic", wrong)
    assert bad.status == "fail" and "2 partitions, the hub expects 3" in bad.detail
    assert "HUB_TOPIC_PARTITIONS=2" in bad.fix
    (fine,) = report.by("topic", good)
    assert fine.status == "ok"
    # The topics were created with the broker's default retention: drift, and how to fix it.
    (drift,) = report.by("configs", good)
    assert drift.status == "warn" and "retention.ms" in drift.detail
    # The embedded broker reports no authorized operations: a real read was tried instead.
    (acl,) = report.by("acl", good)
    assert acl.status == "ok" and "read works" in acl.detail
    assert not report.by("acl", missing)
    text = "\n".join(report.lines())
    assert f"FAIL  topic       {missing}: missing\n      fix: hub topics apply" in text


class _DeniedAcls:
    """The real admin client, except that the broker reports a principal without WRITE.

    A simulated answer to DescribeTopics with authorized operations (KIP-430): the embedded
    broker has no authorizer, so it cannot deny anything itself.
    """

    def __init__(self, real: AdminClient, denied_topic: str) -> None:
        self._real = real
        self._denied = denied_topic

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def describe_topics(self, topics: TopicCollection, **kwargs: Any) -> dict[str, Future[Any]]:
        assert kwargs.get("include_authorized_operations") is True
        real = self._real.describe_topics(topics, **kwargs)
        out: dict[str, Future[Any]] = {}
        for name, fut in real.items():
            description = fut.result()
            ops = [AclOperation.DESCRIBE, AclOperation.READ]
            if name != self._denied:
                ops.append(AclOperation.WRITE)
            description.authorized_operations = ops
            done: Future[Any] = Future()
            done.set_result(description)
            out[name] = done
        return out


def test_doctor_reports_a_denied_acl_with_the_grant_that_fixes_it(
    hub_settings: Settings, unique: str
) -> None:
    allowed, denied = f"doctor.{unique}.allowed", f"doctor.{unique}.denied"
    _create(hub_settings, allowed, 1)
    _create(hub_settings, denied, 1)
    admin = _DeniedAcls(AdminClient(hub_settings.kafka_config()), denied)
    specs = [TopicSpec(allowed, 1, 86_400_000), TopicSpec(denied, 1, 86_400_000)]

    report = diagnose(hub_settings, specs=specs, drivers=["webhook"], admin=admin)

    (no,) = report.by("acl", denied)
    assert no.status == "fail" and no.detail == "the principal may not WRITE"
    assert f"grant WRITE on topic {denied}" in no.fix
    (yes,) = report.by("acl", allowed)
    assert yes.status == "ok" and yes.detail == "describe, read and write allowed"
    assert not report.ok


def test_doctor_says_when_no_broker_answers(hub_settings: Settings) -> None:
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{free_port()}")
    report = diagnose(settings, timeout_s=3.0)
    (finding,) = report.by("connect")
    assert finding.status == "fail" and "no broker of 127.0.0.1:" in finding.detail
    assert "HUB_KAFKA_BOOTSTRAP" in finding.fix
    assert not report.by("topic")  # nothing more is tried without a cluster


def test_hub_doctor_command_checks_the_hub_catalogue(hub_env: dict[str, str]) -> None:
    # The session fixture applied the catalogue: every topic exists with its partitions.
    env = {**os.environ, **hub_env, "HUB_LOG_LEVEL": "ERROR"}
    result = subprocess.run(
        [sys.executable, "-m", "pim_hub", "doctor"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert "OK    connect     cluster" in result.stdout, result.stderr
    assert "OK    topic       hub.mutations: 6 partitions" in result.stdout
    assert "FAIL  topic" not in result.stdout
    assert result.stdout.strip().splitlines()[-1].endswith("checks")


def test_hub_doctor_refuses_settings_the_mutator_cannot_use(hub_env: dict[str, str]) -> None:
    env = {
        **os.environ,
        **hub_env,
        "HUB_KAFKA__PROPERTIES__SASL_KERBEROS_KINIT_CMD": "kinit -k",
        "HUB_LOG_LEVEL": "ERROR",
    }
    result = subprocess.run(
        [sys.executable, "-m", "pim_hub", "doctor", "--timeout", "5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 1
    assert "FAIL  config      mutator" in result.stdout
    assert "sasl.kerberos.kinit.cmd" in result.stdout


def test_doctor_checks_the_mutator_s_changelog(hub_settings: Settings, unique: str) -> None:
    missing = MutatorSettings(app_id=f"doctor-{unique}-a")
    report = diagnose(hub_settings, mutator=missing, specs=[], drivers=[])
    (gone,) = report.by("topic", f"doctor-{unique}-a-entity-state-changelog")
    assert gone.status == "warn" and "creates it at its first start" in gone.detail
    wrong = MutatorSettings(app_id=f"doctor-{unique}-b")
    _create(hub_settings, f"doctor-{unique}-b-entity-state-changelog", 2)
    report = diagnose(hub_settings, mutator=wrong, specs=[], drivers=[])
    (bad,) = report.by("topic", f"doctor-{unique}-b-entity-state-changelog")
    assert bad.status == "fail" and "co-partitioned" in bad.detail
    assert not report.ok
