"""The console's endpoints against the real broker, PostgreSQL and running pipeline: sign-in,
CSRF, roles, escaping, dead-letter redrive, enable/disable, replay with a dry run, the audit
log. (The browser tests drive the same flows in Chromium: test_console_browser.py.)
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any, Literal

import httpx
import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient
from typer.testing import CliRunner

from pim_hub.cli.main import app as cli_app
from pim_hub.console.app import create_app
from pim_hub.console.auth import hash_password
from pim_hub.console.settings import ConsoleSettings, ConsoleUser
from pim_hub.devstack.sink import HttpSink
from pim_hub.devstack.stack import query, wait_for
from pim_hub.devstack.supervisor import Supervisor
from pim_hub.runtime.settings import Settings
from tests.integration.test_replay_ops import REFRESH_S, Feed, add_webhook, version

pytestmark = pytest.mark.integration

#: The responses of Starlette's TestClient (its own httpx: typed apart from the httpx package).
Response = Any

OPERATOR_PASSWORD = "operator-pass-1"
VIEWER_PASSWORD = "viewer-pass-1"
_HASHES: dict[str, str] = {}


def console_settings(unique: str, **overrides: Any) -> ConsoleSettings:
    """Two users of this test (an operator and a viewer) with scrypt hashes."""
    if not _HASHES:
        _HASHES["operator"] = hash_password(OPERATOR_PASSWORD)
        _HASHES["viewer"] = hash_password(VIEWER_PASSWORD)
    users = [
        ConsoleUser(
            name=f"op-{unique}", role="operator", password_hash=SecretStr(_HASHES["operator"])
        ),
        ConsoleUser(
            name=f"view-{unique}", role="viewer", password_hash=SecretStr(_HASHES["viewer"])
        ),
    ]
    return ConsoleSettings(
        users=users, secret_key=SecretStr(f"console-test-key-{unique}"), **overrides
    )


def csrf_of(html: str) -> str:
    """The CSRF token a page carries."""
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', html)
    assert match, "the page carries no CSRF token"
    return match.group(1)


def sign_in(client: TestClient | httpx.Client, name: str, password: str) -> str:
    """Sign in; return the session's CSRF token."""
    token = csrf_of(client.get("/login").text)
    r = client.post(
        "/login",
        data={"name": name, "password": password, "csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    return csrf_of(client.get("/").text)


def audit_rows(database_url: str, actor: str) -> list[dict[str, Any]]:
    """Audit entries of one user, oldest first."""
    return query(
        database_url,
        "SELECT action, target, jobs, outcome, detail FROM console_audit WHERE actor = %s"
        " ORDER BY id",
        actor,
    )


class ConsoleSession:
    """A browser-less session on the console with this test's two users: signs in and posts
    forms carrying the session's CSRF token (the steps every test repeats)."""

    def __init__(self, client: TestClient, unique: str) -> None:
        self.client = client
        self.operator, self.viewer = f"op-{unique}", f"view-{unique}"
        self.token = ""

    def sign_in(self, role: Literal["operator", "viewer"] = "operator") -> str:
        """Sign in as this test's operator or viewer; return (and keep) the CSRF token."""
        name, password = (
            (self.operator, OPERATOR_PASSWORD)
            if role == "operator"
            else (self.viewer, VIEWER_PASSWORD)
        )
        self.token = sign_in(self.client, name, password)
        return self.token

    def get(self, path: str, **kwargs: Any) -> Response:
        """A GET in this session."""
        return self.client.get(path, **kwargs)

    def post(
        self,
        path: str,
        form: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        follow_redirects: bool = True,
    ) -> Response:
        """POST a form with the session's CSRF token (`token` overrides it; "" sends none)."""
        given = self.token if token is None else token
        data = {**({"csrf_token": given} if given else {}), **(form or {})}
        return self.client.post(path, data=data, follow_redirects=follow_redirects)


@pytest.fixture
def console(hub_settings: Settings, unique: str) -> Iterator[ConsoleSession]:
    """The console app with this test's operator and viewer, nobody signed in yet."""
    cfg = console_settings(unique)
    with TestClient(create_app(hub_settings, cfg), raise_server_exceptions=False) as client:
        yield ConsoleSession(client, unique)


def test_nothing_is_served_without_sign_in_and_every_post_needs_the_csrf_token(
    console: ConsoleSession,
) -> None:
    for path in ("/", "/entities?q=x", "/dead", "/integrations", "/replay", "/invalid", "/audit"):
        r = console.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), path
    assert console.get("/runs/abc.json").status_code == 401

    # A sign-in without the token is refused before the password is even looked at.
    login = {"name": console.operator, "password": OPERATOR_PASSWORD}
    r = console.post("/login", login, token="")
    assert r.status_code == 403 and "CSRF" in r.text
    token = csrf_of(console.get("/login").text)
    bad = console.post("/login", {**login, "password": "wrong"}, token=token)
    assert bad.status_code == 401 and "Wrong user name or password" in bad.text

    token = csrf_of(console.get("/login").text)
    signed = console.post("/login", login, token=token, follow_redirects=False)
    cookie = signed.headers["set-cookie"].lower()
    assert "hub_console=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
    assert "secure" not in cookie  # loopback; off it the cookie is Secure (unit test)
    new_token = csrf_of(console.get("/").text)
    assert new_token != token  # signing in replaces the session and its token
    console.token = new_token
    for path in ("/", "/dead", "/integrations", "/replay", "/invalid", "/audit", "/entities"):
        r = console.get(path)
        assert r.status_code == 200, (path, r.text[:500])
        assert "content-security-policy" in r.headers
        assert console.operator in r.text
    # An action with a wrong token is refused and changes nothing.
    r = console.post("/integrations/whatever/disable", token=new_token + "x")
    assert r.status_code == 403 and "CSRF" in r.text
    assert console.post("/integrations/whatever/disable", token="").status_code == 403
    # The session ends with sign-out (which needs the token too).
    assert console.post("/logout", follow_redirects=False).status_code == 303
    assert console.get("/", follow_redirects=False).status_code == 303


def test_failed_sign_ins_are_limited_per_address_and_user_name_with_429_and_an_audit_entry(
    hub_settings: Settings, database_url: str, unique: str
) -> None:
    cfg = console_settings(
        unique, sign_in_limit_per_user=3, sign_in_limit_per_address=5, sign_in_window_s=120
    )
    from prometheus_client import REGISTRY

    def signs(outcome: str) -> float:
        return REGISTRY.get_sample_value("pimhub_console_sign_ins_total", {"outcome": outcome}) or 0

    before = {o: signs(o) for o in ("wrong", "limited")}
    with TestClient(create_app(hub_settings, cfg), raise_server_exceptions=False) as client:
        session = ConsoleSession(client, unique)
        token = csrf_of(session.get("/login").text)

        def attempt(name: str, password: str) -> Response:
            return session.post(
                "/login", {"name": name, "password": password}, token=token, follow_redirects=False
            )

        for _ in range(3):
            assert attempt(session.operator, "wrong").status_code == 401
        # The operator's name has spent its three: even the right password waits now.
        limited = attempt(session.operator, OPERATOR_PASSWORD)
        assert limited.status_code == 429 and "Too many failed sign-ins" in limited.text
        assert 0 < int(limited.headers["retry-after"]) <= 120
        assert attempt(session.operator, "wrong").status_code == 429  # audited once only
        # Another name from the same address still has the address's last two failures...
        assert attempt(f"nobody-{unique}", "x").status_code == 401
        assert attempt(session.viewer, "wrong").status_code == 401
        # ...then the address is spent for every name.
        assert attempt(session.viewer, VIEWER_PASSWORD).status_code == 429
    assert signs("wrong") - before["wrong"] == 5 and signs("limited") - before["limited"] == 3
    refused = [
        (r["actor"], r["role"], r["action"], r["outcome"], r["detail"]["address"])
        for r in query(
            database_url,
            "SELECT actor, role, action, outcome, detail FROM console_audit"
            " WHERE actor IN (%s, %s) ORDER BY id",
            session.operator,
            session.viewer,
        )
    ]
    assert refused == [
        (session.operator, "anonymous", "sign-in", "refused", "testclient"),
        (session.viewer, "anonymous", "sign-in", "refused", "testclient"),
    ]


def test_a_viewer_sees_pages_but_is_refused_every_action_and_the_refusal_is_audited(
    console: ConsoleSession, database_url: str, http_sink: HttpSink, unique: str
) -> None:
    iid = f"con-view-{unique}"
    add_webhook(database_url, iid, f"{http_sink.url}/{iid}")
    console.sign_in("viewer")
    page = console.get("/integrations").text
    assert iid in page and f"/integrations/{iid}/disable" not in page  # no button for a viewer
    r = console.post(f"/integrations/{iid}/disable")
    assert r.status_code == 403 and "may not disable" in r.text
    assert console.post("/dead/redrive", {"job_id": "x", "target": "t"}).status_code == 403
    assert console.post("/replay/run", {"kind": "replay", "since": "1h"}).status_code == 403
    assert query(database_url, "SELECT enabled FROM integrations WHERE id = %s", iid) == [
        {"enabled": True}
    ]
    rows = audit_rows(database_url, console.viewer)
    assert [(r["action"], r["outcome"]) for r in rows] == [
        ("disable", "refused"),
        ("redrive", "refused"),
        ("replay", "refused"),
    ]
    assert "refused" in console.get("/audit").text


def test_the_console_will_not_start_without_someone_who_can_sign_in(
    hub_env: dict[str, str],
) -> None:
    for host in ("127.0.0.1", "0.0.0.0"):  # noqa: S104 - loopback is no exception any more
        env = {**hub_env, "HUB_CONSOLE_USERS": "[]", "HUB_CONSOLE_HOST": host}
        out = CliRunner().invoke(cli_app, ["console"], env=env)
        assert out.exit_code == 2, out.output
        assert "no one could sign in" in out.output and "hub console add-user" in out.output
    bad = CliRunner().invoke(
        cli_app,
        ["console"],
        env={**hub_env, "HUB_CONSOLE_USERS": '[{"name": "a", "password_hash": "plain"}]'},
    )
    assert bad.exit_code == 2 and "hash-password" in bad.output


def test_the_dead_letter_page_reads_only_what_the_topic_gained_since_the_last_load(
    console: ConsoleSession,
    hub_settings: Settings,
    database_url: str,
    unique: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pim_hub.ops.dead as dead_ops
    from pim_hub.devstack.fixtures import change, job_record
    from pim_hub.runtime import logread
    from pim_hub.runtime.kafka import make_producer
    from pim_hub.schemas import topics
    from pim_hub.schemas.serde import Serde

    iid, serde = f"con-dlq-{unique}", Serde(hub_settings.registry_config())
    producer = make_producer(hub_settings)

    def dead_letter(n: int, kind: str, reason: str) -> str:
        job = job_record(iid, "webhook", "low", f"product:{unique}-{n}", [change("name", n)], None)
        job["last_error"] = reason
        producer.produce(
            topics.JOBS_DEAD,
            serde.encode("Job", job, topic=topics.JOBS_DEAD),
            key=f"{iid}|product:{unique}-{n}",
            headers={"error.type": kind, "error.message": reason},
        )
        assert producer.flush(30) == 0
        return str(job["job_id"])

    ranges: list[dict[tuple[str, int], tuple[int, int]]] = []
    real_scan = logread.scan

    def spy(consumer: Any, todo: Any, **kwargs: Any) -> Any:
        ranges.append(dict(todo))
        return real_scan(consumer, todo, **kwargs)

    monkeypatch.setattr(logread, "scan", spy)
    first = [dead_letter(1, "http_422", "sku rejected <b>"), dead_letter(2, "timeout", "slow")]
    console.sign_in("viewer")
    page = console.get("/dead", params={"integration": iid})
    assert page.status_code == 200, page.text[:500]
    assert f"{iid} · http_422" in page.text and f"{iid} · timeout" in page.text
    assert "sku rejected &lt;b&gt;" in page.text and set(first) <= set(
        re.findall(r'data-job="([^"]+)"', page.text)
    )
    ends = {
        (topics.JOBS_DEAD, p): o
        for p, o in (
            (r["dead_partition"], r["next_offset"])
            for r in query(database_url, "SELECT * FROM dead_letter_positions")
        )
    }
    # A load with nothing new reads no record; the next reads from where the last one ended.
    ranges.clear()
    assert dead_ops.sync_dead_letters(hub_settings) == 0 and ranges == []
    third = dead_letter(3, "http_422", "sku rejected again")
    page = console.get("/dead", params={"integration": iid, "reason": "HTTP_422"})
    assert len(ranges) == 1 and all(start >= ends[tp] for tp, (start, _) in ranges[0].items())
    assert sum(end - start for start, end in ranges[0].values()) >= 1
    assert "2 dead letter(s), 2 job(s)" in page.text and "timeout" not in page.text
    assert third in page.text

    # Redrive (the CLI's code path) takes the letter off the page at once.
    console.sign_in("operator")
    done = console.post("/dead/redrive", {"job_id": third, "target": iid})
    assert done.status_code == 200 and "1 job(s) redriven" in done.text
    page = console.get("/dead", params={"integration": iid})
    assert third not in page.text and "1 dead letter(s), 1 job(s)" in page.text
    group = console.post("/dead/confirm", {"integration": iid, "kind": "http_422"})
    assert "<strong>1 job(s)</strong> will be sent" in group.text
    rows = query(database_url, "SELECT job_id FROM dead_letters WHERE integration_id = %s", iid)
    assert sorted(r["job_id"] for r in rows) == sorted([*first, third])  # copied once each

    # A stored position past the partition's end means another log under the same name (the
    # topic was recreated): that partition is copied again from its start, nothing twice.
    import psycopg

    (row,) = query(
        database_url, "SELECT dead_partition FROM dead_letters WHERE job_id = %s", first[1]
    )
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE dead_letter_positions SET next_offset = next_offset + 1000000"
            " WHERE dead_partition = %s",
            (row["dead_partition"],),
        )
        conn.execute("DELETE FROM dead_letters WHERE job_id = %s", (first[1],))
    assert dead_ops.sync_dead_letters(hub_settings) >= 1
    page = console.get("/dead", params={"integration": iid, "reason": "slow"})
    assert f"{iid} · timeout" in page.text and first[1] in page.text
    rows = query(database_url, "SELECT job_id FROM dead_letters WHERE integration_id = %s", iid)
    assert sorted(r["job_id"] for r in rows) == sorted([*first, third])


def test_find_a_product_see_its_diff_escaped_redrive_its_dead_job_and_disable_the_target(
    pipeline: Supervisor,
    console: ConsoleSession,
    hub_settings: Settings,
    database_url: str,
    unique: str,
) -> None:
    sink = HttpSink(script=[(400, {})]).start()  # the first delivery is refused for good
    try:
        iid = f"con-{unique}"
        add_webhook(database_url, iid, f"{sink.url}/{iid}")
        time.sleep(REFRESH_S)
        feed = Feed(hub_settings, unique)
        key = feed.key(1)
        hostile = '<script>alert("x")</script>&<b>'
        feed.publish(1, hostile, version(10))

        def status() -> str | None:
            rows = query(
                database_url, "SELECT status FROM deliveries WHERE integration_id = %s", iid
            )
            return rows[0]["status"] if rows else None

        wait_for(lambda: status() == "dead", timeout=90, what="a dead job", supervisor=pipeline)
        console.sign_in("operator")

        # Entity search by SKU: the trace, the field diff, the untrusted name escaped.
        page = console.get("/entities", params={"q": f"SKU-{feed.uuid(1)}"})
        assert page.status_code == 200, page.text[:500]
        assert key in page.text and 'class="stage">mutation' in page.text
        assert "dead-letter" in page.text and "http_400" in page.text
        assert "<script>alert" not in page.text
        assert "&lt;script&gt;alert(\\&#34;x\\&#34;)&lt;/script&gt;&amp;&lt;b&gt;" in page.text
        assert "<td>name</td><td>en_US</td>" in page.text.replace("<td>values</td>", "")
        missing = console.get("/entities", params={"q": f"SKU-none-{unique}"})
        assert missing.status_code == 404 and "no entity matches" in missing.text

        # Dead letters: grouped by integration and reason, with the error.
        dead = console.get("/dead", params={"integration": iid})
        assert f"{iid} · http_400" in dead.text and "1 job(s)" in dead.text
        job_ids = re.findall(r'name="job_id" value="([^"]+)"', dead.text)
        assert len(set(job_ids)) == 1
        group = {"integration": iid, "kind": "http_400"}
        confirm_group = console.post("/dead/confirm", group)
        assert "<strong>1 job(s)</strong> will be sent" in confirm_group.text
        assert 'name="expected" value="1"' in confirm_group.text
        # Confirmed for another count (the group changed meanwhile): nothing is sent, the new
        # count is asked for.
        stale = console.post("/dead/redrive", {**group, "expected": "5"})
        assert stale.status_code == 409 and "The group changed" in stale.text
        assert "<strong>1 job(s)</strong> will be sent" in stale.text
        chosen = {"job_id": job_ids[0], "target": iid}
        confirm = console.post("/dead/confirm", chosen)
        assert confirm.status_code == 200
        assert "<strong>1 job(s)</strong> will be sent" in confirm.text
        done = console.post("/dead/redrive", chosen)
        assert done.status_code == 200 and "1 job(s) redriven" in done.text
        wait_for(
            lambda: status() == "delivered", timeout=90, what="redelivery", supervisor=pipeline
        )
        assert len(sink.bodies(key)) == 1
        # Asking again sends nothing: the dead letter is redriven already.
        again = console.post("/dead/confirm", chosen)
        assert "redriven already" in again.text
        assert 'id="no-dead"' in console.get("/dead", params={"integration": iid}).text

        # Disable: through the registry (published), fan-out stops making jobs for it.
        r = console.post(f"/integrations/{iid}/disable", follow_redirects=False)
        assert r.status_code == 303
        assert query(database_url, "SELECT enabled FROM integrations WHERE id = %s", iid) == [
            {"enabled": False}
        ]
        time.sleep(REFRESH_S)
        feed.publish(2, "After disable", version(11))
        other = f"con-other-{unique}"
        add_webhook(database_url, other, f"{sink.url}/{other}")
        time.sleep(REFRESH_S)
        feed.publish(3, "Watermark", version(12))
        wait_for(
            lambda: query(
                database_url,
                "SELECT 1 FROM deliveries WHERE integration_id = %s AND status = 'delivered'",
                other,
            ),
            timeout=90,
            what="the other integration's delivery",
            supervisor=pipeline,
        )
        rows = query(
            database_url, "SELECT entity_key FROM deliveries WHERE integration_id = %s", iid
        )
        assert [r["entity_key"] for r in rows] == [key], "fan-out went on after disable"
        assert "disabled" in console.get("/integrations").text

        actions = [
            (r["action"], r["target"], r["jobs"], r["outcome"])
            for r in audit_rows(database_url, console.operator)
        ]
        assert actions == [("redrive", iid, 1, "ok"), ("disable", iid, None, "ok")], actions
    finally:
        sink.stop()


def test_replay_counts_before_it_sends_and_reports_progress(
    pipeline: Supervisor,
    console: ConsoleSession,
    hub_settings: Settings,
    database_url: str,
    http_sink: HttpSink,
    unique: str,
) -> None:
    iid = f"con-rp-{unique}"
    add_webhook(database_url, iid, f"{http_sink.url}/{iid}")
    time.sleep(REFRESH_S)
    feed = Feed(hub_settings, unique)
    for i in range(3):
        feed.publish(i, f"Replayed {i}", version(9, i))
    wait_for(
        lambda: (
            len(
                query(
                    database_url,
                    "SELECT 1 FROM deliveries WHERE integration_id = %s AND status = 'delivered'",
                    iid,
                )
            )
            == 3
        ),
        timeout=90,
        what="three deliveries",
        supervisor=pipeline,
    )
    console.sign_in("operator")
    form = {
        "kind": "replay",
        "since": "1h",
        "mode": "force",
        "integration": iid,
        "key": feed.pattern,
    }
    bad = console.post("/replay/preview", {**form, "since": "yesterday"})
    assert bad.status_code == 400 and "expected an ISO 8601 time" in bad.text
    preview = console.post("/replay/preview", form)
    assert preview.status_code == 200, preview.text[:800]
    assert "<strong>3 job(s)</strong> would be sent" in preview.text
    assert "priority: low for every job (fan-out would give normal 3)" in preview.text
    assert len(query(database_url, "SELECT 1 FROM deliveries WHERE integration_id = %s", iid)) == 3
    started = console.post("/replay/run", form, follow_redirects=False)
    assert started.status_code == 303
    run_url = started.headers["location"]
    assert console.get(run_url).status_code == 200

    def finished() -> dict[str, Any]:
        run: dict[str, Any] = console.get(run_url + ".json").json()
        return run if run["state"] != "running" else {}

    run: dict[str, Any] = wait_for(finished, timeout=90, what="the replay run", supervisor=pipeline)
    assert run["state"] == "done" and run["jobs"] == 3 and run["done"] >= run["total"] > 0
    wait_for(
        lambda: (
            len(query(database_url, "SELECT 1 FROM deliveries WHERE integration_id = %s", iid)) == 6
        ),
        timeout=90,
        what="three replay jobs",
        supervisor=pipeline,
    )

    # Resync: the full current state of the three products, counted first, then sent.
    resync = {"kind": "resync", "integration": iid, "key": feed.pattern}
    preview = console.post("/replay/preview", resync)
    assert preview.status_code == 200, preview.text[:800]
    assert "<strong>3 job(s)</strong> would be sent" in preview.text
    started = console.post("/replay/run", resync, follow_redirects=False)
    run_url = started.headers["location"]
    run = wait_for(finished, timeout=90, what="the resync run", supervisor=pipeline)
    assert run["state"] == "done" and run["jobs"] == 3, run
    wait_for(
        lambda: (
            len(query(database_url, "SELECT 1 FROM deliveries WHERE integration_id = %s", iid)) == 9
        ),
        timeout=90,
        what="three resync jobs",
        supervisor=pipeline,
    )
    rows = audit_rows(database_url, console.operator)
    assert [(r["action"], r["target"], r["jobs"], r["outcome"]) for r in rows] == [
        ("replay", iid, 3, "ok"),
        ("resync", iid, 3, "ok"),
    ]
    assert rows[0]["detail"]["mode"] == "force"


def test_the_overview_shows_lag_members_and_a_group_that_is_stuck(
    console: ConsoleSession,
    hub_settings: Settings,
    unique: str,
) -> None:
    from confluent_kafka import Consumer, TopicPartition

    from pim_hub.console.data import group_rows
    from pim_hub.runtime.kafka import consumer_config
    from tests.integration.test_offsets_ops import _topic

    topic, driver = f"console-lag-{unique}", f"con{unique}"
    group = f"hub.dispatch.{driver}.normal"
    _topic(hub_settings, topic, 5, int(time.time() * 1000) - 60_000)
    member = Consumer(consumer_config(hub_settings, group))
    member.subscribe([topic])
    read: list[Any] = []

    def two_read() -> bool:
        msg = member.poll(0.5)
        if msg is not None and msg.error() is None:
            read.append(msg)
        return len(read) >= 2

    wait_for(two_read, timeout=60, interval=0, what="2 records read by the member")
    member.commit(offsets=[TopicPartition(topic, 0, 2)], asynchronous=False)

    live = next(g for g in group_rows(hub_settings, [driver]) if g.group == group)
    assert (live.stage, live.lag, live.active) == (f"dispatch {driver} / normal", 3, True)
    assert live.lag_seconds > 30 and not live.stuck
    member.close()

    def stuck() -> bool:
        return any(g.group == group and g.stuck for g in group_rows(hub_settings, [driver]))

    wait_for(stuck, timeout=60, what="the group without members")
    console.sign_in("operator")
    page = console.get("/").text
    assert f"3 message(s) waiting in group {group} and no consumer" in page
    assert f"<code>{group}</code>" in console.get("/overview/live").text


def test_rejected_snapshots_are_listed_with_their_reason_escaped(
    pipeline: Supervisor,
    console: ConsoleSession,
    hub_settings: Settings,
    unique: str,
) -> None:
    from pim_hub.runtime.kafka import make_producer, produce_sync
    from pim_hub.schemas import topics

    key = f"product:{unique}-<b>bold</b>"
    produce_sync(make_producer(hub_settings), topics.SNAPSHOTS, b"{not avro at all", key=key)
    console.sign_in("viewer")

    def listed() -> str:
        page = console.get("/invalid").text
        return page if f"product:{unique}-&lt;b&gt;bold&lt;/b&gt;" in page else ""

    page = wait_for(listed, timeout=90, what="the rejected snapshot listed", supervisor=pipeline)
    assert "<b>bold</b>" not in page
    row = next(r for r in page.split("<tr>") if f"product:{unique}-" in r)
    assert "invalid_snapshot" in row and ("Avro" in row or "header" in row)


def test_the_overview_names_a_priority_whose_jobs_have_no_dispatcher(
    pipeline: Supervisor,
    console: ConsoleSession,
    hub_settings: Settings,
    database_url: str,
    unique: str,
) -> None:
    import psycopg

    # An integration of a driver no dispatcher runs for (written as an older hub or another
    # tool would: the registry row alone); fan-out makes its jobs, nobody delivers them.
    iid, driver = f"con-ghost-{unique}", f"ghost{unique}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO integrations (id, name, driver, enabled, config, entity_types)"
            " VALUES (%s, 'ghost', %s, true, '{}', ARRAY['product'])",
            (iid, driver),
        )
    try:
        time.sleep(REFRESH_S)
        Feed(hub_settings, unique).publish(1, "Nobody delivers me", version(10))
        console.sign_in("viewer")
        group = f"hub.dispatch.{driver}.normal"

        def flagged() -> str:
            page = console.get("/overview/live").text
            return page if f"hub dispatcher --driver {driver} --priority normal" in page else ""

        page = wait_for(flagged, timeout=90, what="the missing dispatcher", supervisor=pipeline)
        problem = next(line for line in page.splitlines() if f"driver {driver}:" in line)
        assert "no dispatcher has ever run for it" in problem and iid in problem
        row = next(r for r in page.split("<tr") if f"<code>{group}</code>" in r)
        assert "missing" in row and 'class="stuck"' in row
        integrations = console.get("/integrations").text
        assert f"{group}: missing" in integrations
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("UPDATE integrations SET enabled = false WHERE id = %s", (iid,))


def test_hub_console_serves_with_users_from_the_environment(
    supervisor: Supervisor, unique: str
) -> None:
    import httpx

    from pim_hub.devstack.embedded import free_port

    port = free_port()
    users = (
        f'[{{"name": "op-{unique}", "role": "operator", '
        f'"password_hash": "{hash_password(OPERATOR_PASSWORD)}"}}]'
    )
    supervisor.env.update(
        {"HUB_CONSOLE_USERS": users, "HUB_CONSOLE_SECRET_KEY": f"console-key-{unique}"}
    )
    svc = supervisor.start("console", "console", "--port", str(port))
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(healthy, timeout=120, what="hub console", supervisor=supervisor)
    with httpx.Client(base_url=base, timeout=30) as client:
        assert client.get("/").status_code == 303  # sign in first
        sign_in(client, f"op-{unique}", OPERATOR_PASSWORD)
        page = client.get("/integrations")
        assert page.status_code == 200 and f"op-{unique}" in page.text
        assert client.get("/static/console.js").status_code == 200
    assert svc.alive()


def test_bad_input_gets_a_clear_answer_never_a_server_error(
    console: ConsoleSession,
    database_url: str,
    http_sink: HttpSink,
    unique: str,
) -> None:
    console.sign_in("operator")
    off = f"con-off-{unique}"
    add_webhook(database_url, off, f"{http_sink.url}/{off}")
    r = console.post(f"/integrations/{off}/disable")
    assert r.status_code == 200  # followed to the integrations page
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("/replay/preview", {"since": "1h", "integration": f"nope-{unique}"}, 400, "nope-"),
        ("/replay/preview", {"kind": "resync", "integration": off}, 400, off),
        ("/replay/preview", {"since": "1h", "until": "2h"}, 400, "after since"),
        ("/replay/preview", {"since": "1h", "entity_type": "planet"}, 400, "planet"),
        ("/replay/run", {"kind": "eject"}, 400, "unknown kind"),
        ("/dead/confirm", {}, 400, "Choose dead letters"),
        ("/dead/redrive", {"integration": "x", "kind": "y", "expected": "0"}, 400, "Choose"),
        (f"/integrations/nope-{unique}/enable", {}, 400, "no integration"),
        (f"/integrations/{off}/explode", {}, 404, "enable or"),
    ]
    for path, form, status, text in cases:
        r = console.post(path, form)
        assert (r.status_code, text in r.text) == (status, True), (path, form, r.text[-600:])
    assert console.get("/runs/nope").status_code == 404
    assert console.get("/entities", params={"q": "<>" * 500}).status_code == 404
    long_query = console.get("/dead", params={"integration": "x" * 5000, "reason": "%"})
    assert long_query.status_code == 200 and 'id="no-dead"' in long_query.text


def test_per_integration_counts_fall_into_five_minute_buckets(
    database_url: str, unique: str
) -> None:
    import psycopg

    from pim_hub.console.data import integration_counts

    iid = f"con-buckets-{unique}"
    rows = [  # (minutes ago, status)
        (1, "delivered"),
        (2, "delivered"),
        (3, "dead"),
        (12, "retrying"),
        (58, "delivered"),
        (90, "delivered"),  # older than an hour: only in the totals
    ]
    with psycopg.connect(database_url, autocommit=True) as conn:
        for i, (ago, status) in enumerate(rows):
            conn.execute(
                "INSERT INTO deliveries (job_id, mutation_id, integration_id, driver, entity_key,"
                " priority, status, attempt, occurred_at) VALUES (%s, %s, %s, 'webhook', %s,"
                " 'normal', %s, 1, now() - %s * interval '1 minute')",
                (f"{iid}-{i}", f"m-{iid}-{i}", iid, f"product:{iid}", status, ago),
            )
    counts = next(c for c in integration_counts(database_url) if c.integration_id == iid)
    assert counts.total == {"delivered": 4, "dead": 1, "retrying": 1}
    assert counts.last_hour == {"delivered": 3, "dead": 1, "retrying": 1}
    assert len(counts.buckets) == 12
    assert counts.buckets[-1] == (2, 0, 1)  # the last five minutes, newest bucket last
    assert counts.buckets[-3] == (0, 1, 0)  # 10 to 15 minutes ago
    assert counts.buckets[0] == (1, 0, 0)  # 55 to 60 minutes ago
    assert sum(sum(b) for b in counts.buckets) == 5 and counts.peak == 3
