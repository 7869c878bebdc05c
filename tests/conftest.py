"""Shared fixtures: one real broker and one fresh PostgreSQL database per test session.

`make test` runs two pytest-xdist workers: each is a session of its own, so each has its own
broker and database (named after its process).
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pim_hub.devstack import embedded as runtime
from pim_hub.devstack.sink import HttpSink
from pim_hub.devstack.stack import settings_from_env
from pim_hub.devstack.supervisor import Supervisor
from pim_hub.runtime import db, outbound
from pim_hub.runtime.kafka import apply_topics
from pim_hub.runtime.settings import Settings
from tests import webhook_schema

#: Short retry tiers so retry tests finish quickly; production defaults are 30s/5min/30min.
TEST_RETRY_DELAYS = "[1,2,3]"

#: Sources besides Akeneo and the fields they own (tests/integration/test_producer_patches.py).
TEST_SOURCES = '{"erp": ["values.erp_stock", "values.erp_price"]}'

#: A webhook driver under its own key: tests whose dispatchers must not share the pipeline's
#: groups use it; the test process and every hub process it starts know it.
TEST_DRIVERS = (
    "webhook_test=tests.integration.test_dispatcher_helpers:WebhookTestDriver,"
    "webhook_obs=tests.integration.test_dispatcher_helpers:WebhookObservedDriver"
)
os.environ["HUB_EXTRA_DRIVERS"] = TEST_DRIVERS

# pytest-xdist's workers ignore SIGINT, and an ignored signal stays ignored in every process
# they start: a hub process under test would then never see Ctrl-C. Give the worker Python's
# usual handler, so its children start with the default disposition, as under a plain pytest.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

#: Test receivers, sinks and sandboxes listen on this machine, which the outgoing URL policy
#: refuses by default: the session opens loopback and private ranges, for the drivers it runs
#: in process and for every hub process it starts (they inherit the environment).
os.environ["HUB_OUTBOUND_ALLOW"] = outbound.LOCAL_ALLOW
outbound.configure(outbound.LOCAL_ALLOW)


@pytest.fixture(scope="session")
def hub_runtime() -> Iterator[runtime.Runtime]:
    """A real Kafka broker (HUB_KAFKA_BOOTSTRAP, testcontainers or embedded Tansu) and PostgreSQL."""
    with runtime.embedded_runtime() as rt:
        yield rt


@pytest.fixture(scope="session")
def database_url(hub_runtime: runtime.Runtime) -> Iterator[str]:
    """A database of this test run only, migrated."""
    name = f"pimhub_test_{os.getpid()}"
    url = runtime.create_database(hub_runtime.database.url, name)
    db.migrate(url)
    yield url
    runtime.drop_database(hub_runtime.database.url, name)


@pytest.fixture(scope="session")
def hub_env(
    hub_runtime: runtime.Runtime, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """Environment for hub processes started by tests."""
    return {
        "HUB_KAFKA_BOOTSTRAP": hub_runtime.broker.bootstrap,
        "HUB_DATABASE_URL": database_url,
        "HUB_RETRY_DELAYS_S": TEST_RETRY_DELAYS,
        "HUB_INTEGRATIONS_REFRESH_S": "1",
        "HUB_EXTRA_DRIVERS": TEST_DRIVERS,
        "HUB_OUTBOUND_ALLOW": outbound.LOCAL_ALLOW,
        "HUB_LOG_LEVEL": "INFO",
        "HUB_MUTATOR_DATA_DIR": str(tmp_path_factory.mktemp("mutator-data")),
        # Field ownership: the test ERP owns attributes no other test uses, so every other
        # test's snapshots are decided exactly as without sources.
        "HUB_SOURCES": TEST_SOURCES,
    }


@pytest.fixture(scope="session")
def hub_settings(hub_env: dict[str, str]) -> Settings:
    """Settings matching hub_env, with every topic created."""
    settings = settings_from_env(hub_env)
    apply_topics(settings)
    return settings


@pytest.fixture
def supervisor(
    hub_env: dict[str, str], hub_settings: Settings, tmp_path: Path
) -> Iterator[Supervisor]:
    """Starts hub services for one test; stops them all afterwards, passed or failed."""
    sup = Supervisor(env=dict(hub_env), log_dir=tmp_path / "logs")
    yield sup
    sup.stop_all()


@pytest.fixture(scope="session")
def http_sink() -> Iterator[HttpSink]:
    """A local HTTP endpoint recording what webhooks deliver."""
    sink = HttpSink().start()
    yield sink
    sink.stop()
    webhook_schema.record_sink(sink.requests)


@pytest.fixture(autouse=True)
def webhook_requests_match_schema() -> Iterator[None]:
    """Every webhook request a test receiver got matches the shipped JSON Schema."""
    seen = len(webhook_schema.VIOLATIONS)
    yield
    violations = webhook_schema.VIOLATIONS[seen:]
    assert not violations, f"webhook requests break the payload schema: {violations[:5]}"


@pytest.fixture
def unique() -> str:
    """A short unique token for entity codes and integration ids of one test."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def pipeline(
    hub_env: dict[str, str], hub_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Supervisor]:
    """The running hub for end-to-end tests: mutator, projector and webhook dispatchers.

    Tests share it: each uses its own entity keys and integration ids (see `unique`).
    Tests that kill processes start their own services with `supervisor` instead.
    """
    sup = Supervisor(env=dict(hub_env), log_dir=tmp_path_factory.mktemp("pipeline-logs"))
    # The mutator and projector serve /metrics: the observability test scrapes these shared
    # processes (a second member in their groups would get only some partitions).
    for name in ("mutator", "projector"):
        sup.metrics_ports[name] = runtime.free_port()
        sup.env["HUB_METRICS_PORT"] = str(sup.metrics_ports[name])
        sup.start(name, name)
    del sup.env["HUB_METRICS_PORT"]
    for priority in ("immediate", "normal", "low"):
        sup.start(
            f"dispatcher-webhook-{priority}",
            "dispatcher",
            "--driver",
            "webhook",
            "--priority",
            priority,
        )
    yield sup
    sup.stop_all()


@pytest.fixture(autouse=True)
def _integrations_end_with_their_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """Disable the integrations an integration test created, once it ends.

    The session shares one database and one running pipeline: an integration left enabled
    would get jobs for every later test's entities (and retry them against a target that is
    gone), starving those tests' own deliveries.
    """
    in_integration = "tests/integration/" in request.node.nodeid or request.node.get_closest_marker(
        "integration"
    )
    if not in_integration:
        yield
        return
    url: str = request.getfixturevalue("database_url")
    with psycopg.connect(url) as conn:
        before = {r[0] for r in conn.execute("SELECT id FROM integrations").fetchall()}
    yield
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE integrations SET enabled = false WHERE NOT (id = ANY(%s))", (list(before),)
        )
