"""The console's pure parts: password hashes, roles, CSRF tokens, settings, the run form,
stage names, rate limits, and the templates' escaping of untrusted data."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import SecretStr, ValidationError
from starlette.datastructures import FormData

from pim_hub.console.app import _environment, _safe_next
from pim_hub.console.auth import (
    Identity,
    authenticate,
    csrf_matches,
    hash_password,
    new_csrf_token,
    verify_password,
)
from pim_hub.console.data import GroupRow, describe_rate_limit, stage_of
from pim_hub.console.forms import parse_run_form
from pim_hub.console.settings import ConsoleSettings, ConsoleUser, is_loopback
from pim_hub.ops.trace import Trace, TraceEvent
from pim_hub.ops.when import parse_when
from pim_hub.schemas.entities import ENTITY_TYPES

CHEAP = {"n": 2**10}  # a low scrypt cost keeps the unit tests quick; the format is the same


def test_a_password_hash_verifies_its_password_only() -> None:
    encoded = hash_password("correct horse", **CHEAP)
    assert encoded.startswith("scrypt$1024$8$1$") and "correct horse" not in encoded
    assert verify_password("correct horse", encoded)
    assert not verify_password("correct hors", encoded)
    assert hash_password("correct horse", **CHEAP) != encoded  # a new salt each time
    for broken in ("", "plain", "scrypt$x$8$1$aa$bb", "bcrypt$1$2$3$4$5", encoded[:-4]):
        assert not verify_password("correct horse", broken)
    with pytest.raises(ValueError):
        hash_password("")


def test_sign_in_checks_name_and_password_and_gives_the_role() -> None:
    settings = ConsoleSettings(
        users=[
            ConsoleUser(
                name="ana", role="operator", password_hash=SecretStr(hash_password("a1", **CHEAP))
            ),
            ConsoleUser(name="vic", password_hash=SecretStr(hash_password("v1", **CHEAP))),
        ]
    )
    assert authenticate(settings, "ana", "a1") == Identity("ana", "operator")
    assert authenticate(settings, "vic", "v1") == Identity("vic", "viewer")
    assert authenticate(settings, "ana", "v1") is None
    assert authenticate(settings, "nobody", "a1") is None
    assert Identity("ana", "operator").may("redrive")
    assert not Identity("vic", "viewer").may("redrive")
    assert not Identity("ana", "operator").may("drop-database")


def test_users_need_a_hash_from_the_hash_command() -> None:
    with pytest.raises(ValidationError, match="hash-password"):
        ConsoleUser(name="x", password_hash=SecretStr("hunter2"))
    with pytest.raises(ValidationError):
        ConsoleUser(name="x", role="admin", password_hash=SecretStr("scrypt$1$1$1$a$b"))  # type: ignore[arg-type]


def test_an_empty_secret_key_means_a_random_one_and_a_short_one_is_refused() -> None:
    assert ConsoleSettings(secret_key=SecretStr("")).secret_key is None
    with pytest.raises(ValidationError, match="16 characters"):
        ConsoleSettings(secret_key=SecretStr("short"))
    key = ConsoleSettings(secret_key=SecretStr("k" * 16)).secret_key
    assert key is not None and key.get_secret_value() == "k" * 16


def test_csrf_tokens_are_random_and_compared_strictly() -> None:
    token = new_csrf_token()
    assert len(token) >= 40 and token != new_csrf_token()
    assert csrf_matches(token, token)
    assert not csrf_matches(token, token + "x")
    assert not csrf_matches(token, None) and not csrf_matches(None, token)
    assert not csrf_matches("", "")


def test_sign_in_needs_users_or_oidc_and_cookies_follow_the_address() -> None:
    for host in ("127.0.0.1", "127.1.2.3", "::1", "localhost"):
        assert is_loopback(host)
    for host in ("0.0.0.0", "10.0.0.5", "console.example.com", "::"):  # noqa: S104
        assert not is_loopback(host)
    assert not ConsoleSettings().sign_in_configured  # loopback or not: nobody can sign in
    user = ConsoleUser(name="ana", password_hash=SecretStr(hash_password("a1", **CHEAP)))
    assert ConsoleSettings(users=[user]).sign_in_configured
    assert ConsoleSettings(
        oidc_issuer="https://id.example", oidc_client_id="hub"
    ).sign_in_configured
    assert not ConsoleSettings(host="127.0.0.1").cookies_secure()
    assert ConsoleSettings(host="10.0.0.5").cookies_secure()
    assert not ConsoleSettings(host="10.0.0.5", secure_cookies=False).cookies_secure()


def test_sign_in_redirects_stay_on_the_console() -> None:
    assert _safe_next("/dead?integration=a") == "/dead?integration=a"
    assert _safe_next("//evil.example/x") == "/"
    assert _safe_next("https://evil.example/") == "/"


def _form(*items: tuple[str, str]) -> FormData:
    return FormData(list(items))


def test_the_run_form_is_checked_like_the_commands_flags() -> None:
    now = datetime(2026, 1, 31, 12, tzinfo=UTC)
    assert parse_when("2h", now) == datetime(2026, 1, 31, 10, tzinfo=UTC)
    assert parse_when("2026-01-31T10:00:00") == datetime(2026, 1, 31, 10, tzinfo=UTC)
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_when("yesterday")

    kind, fields = parse_run_form(
        _form(
            ("kind", "replay"),
            ("since", "1h"),
            ("mode", "force"),
            ("integration", "a"),
            ("integration", "b"),
            ("entity_type", "product"),
            ("key", "product:*"),
            ("rate", "5"),
        ),
        ENTITY_TYPES,
    )
    assert kind == "replay"
    assert fields["integrations"] == ["a", "b"] and fields["mode"] == "force"
    assert fields["filter"].matches("product:1") and not fields["filter"].matches("category:1")
    assert fields["rate"] == 5.0 and fields["until"] is None

    kind, fields = parse_run_form(_form(("kind", "resync"), ("integration", "new")), ENTITY_TYPES)
    assert (kind, fields["integration"], fields["target"]) == ("resync", "new", "new")

    bad = [
        ([("kind", "drop")], "unknown kind"),
        ([("kind", "replay")], "say from when"),
        ([("since", "1h"), ("mode", "wild")], "guarded or force"),
        ([("since", "1h"), ("rate", "-1")], "negative"),
        ([("since", "1h"), ("rate", "fast")], "number"),
        ([("since", "1h"), ("entity_type", "planet")], "unknown entity type"),
        ([("since", "1h"), ("until", "2h")], "after since"),
        ([("kind", "resync")], "exactly one"),
        ([("kind", "resync"), ("integration", "a"), ("integration", "b")], "exactly one"),
    ]
    for items, message in bad:
        with pytest.raises(ValueError, match=message):
            parse_run_form(_form(*items), ENTITY_TYPES)


def test_stage_names_and_stuck_groups() -> None:
    assert stage_of("hub.dispatch.magento2.immediate") == "dispatch magento2 / immediate"
    assert stage_of("hub-mutator") == "mutator"
    assert stage_of("hub-mutator-fanout") == "fan-out"
    assert stage_of("hub.ingest.enricher") == "ingest"
    assert stage_of("hub.projector.deliveries") == "projector deliveries"
    assert GroupRow("g", "s", "EMPTY", 0, 5, 1.0).stuck
    assert not GroupRow("g", "s", "STABLE", 0, 5, 1.0).stuck  # a broker that lists no members
    assert not GroupRow("g", "s", "EMPTY", 0, 0, 0.0).stuck
    assert GroupRow("g", "s", "STABLE", 0, 5, 1.0).members_text == "yes"


def test_rate_limits_are_described_or_explained() -> None:
    assert describe_rate_limit({}, 8) == "none set (unlimited), 8 concurrent, burst 1"
    limited = {"rate_limit": {"requests_per_s": 20, "concurrent": 4, "burst": 30}}
    assert describe_rate_limit(limited, 8) == "20/s, 4 concurrent, burst 30"
    five = {"rate_limit": {"requests_per_s": 5}}
    assert describe_rate_limit(five, 8) == "5/s, 8 concurrent, burst 5"
    assert describe_rate_limit({"rate_limit": {"speed": 1}}, 8).startswith("invalid: ")


def test_untrusted_product_data_is_escaped_in_every_place_it_is_shown() -> None:
    hostile = "<img src=x onerror=alert(1)>\"'&"
    at = datetime(2026, 1, 1, tzinfo=UTC)
    trace = Trace(
        query=hostile,
        keys=[f"product:{hostile}"],
        events=[
            TraceEvent(
                at,
                "mutation",
                "hub.mutations",
                0,
                1,
                f"update {hostile}",
                {
                    "changes": [
                        {
                            "field": "values",
                            "attribute": hostile,
                            "locale": hostile,
                            "scope": None,
                            "old": hostile,
                            "new": {"k": hostile},
                        }
                    ]
                },
            ),
            TraceEvent(
                at, "dead-letter", "hub.jobs.dead", 0, 2, hostile, {"error_message": hostile}
            ),
        ],
        entities=[],
        deliveries=[],
    )
    html = (
        _environment()
        .get_template("entities.html")
        .render(
            request_path="/entities",
            who=Identity("ana", "viewer"),
            csrf="t",
            nav=[],
            query=hostile,
            trace=trace,
            error=hostile,
            states={"k": hostile},
        )
    )
    assert "<img" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert html.count("&lt;img") >= 8


def test_off_loopback_the_session_cookie_is_secure_and_sign_in_needs_the_token() -> None:
    import re

    from starlette.testclient import TestClient

    from pim_hub.console.app import create_app
    from pim_hub.runtime.settings import Settings

    cfg = ConsoleSettings(
        host="10.0.0.5",
        users=[
            ConsoleUser(
                name="ana", role="operator", password_hash=SecretStr(hash_password("a1", **CHEAP))
            )
        ],
    )
    with TestClient(create_app(Settings(), cfg), base_url="https://console.test") as client:
        page = client.get("/login")
        assert page.status_code == 200
        assert "default-src 'self'" in page.headers["content-security-policy"]
        token = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
        assert token is not None
        assert client.post("/login", data={"name": "ana", "password": "a1"}).status_code == 403
        signed = client.post(
            "/login",
            data={"name": "ana", "password": "a1", "csrf_token": token.group(1)},
            follow_redirects=False,
        )
        assert signed.status_code == 303
        assert "; secure" in signed.headers["set-cookie"].lower()
        assert signed.headers["location"] == "/"


def test_sign_in_returns_to_the_page_asked_for_and_never_to_another_site() -> None:
    import re

    from starlette.testclient import TestClient

    from pim_hub.console.app import create_app
    from pim_hub.runtime.settings import Settings

    cfg = ConsoleSettings(
        users=[ConsoleUser(name="ana", password_hash=SecretStr(hash_password("a1", **CHEAP)))],
    )
    with TestClient(create_app(Settings(), cfg)) as client:
        for asked, landing in (
            ("/dead?integration=shop", "/dead?integration=shop"),
            ("//evil.example/x", "/"),
            ("https://evil.example", "/"),
        ):
            page = client.get("/login", params={"next": asked})
            token = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
            nxt = re.search(r'name="next" value="([^"]*)"', page.text)
            assert token is not None and nxt is not None
            r = client.post(
                "/login",
                data={"name": "ana", "password": "a1", "csrf_token": token.group(1), "next": asked},
                follow_redirects=False,
            )
            assert r.status_code == 303 and r.headers["location"] == landing, asked


def test_without_users_only_the_sign_in_page_is_served_and_it_says_how_to_add_one() -> None:
    import re

    from starlette.testclient import TestClient

    from pim_hub.console.app import create_app
    from pim_hub.runtime.settings import Settings

    with TestClient(create_app(Settings(), ConsoleSettings(host="127.0.0.1"))) as client:
        for path in ("/", "/dead", "/integrations", "/replay", "/audit", "/entities?q=x"):
            r = client.get(path, follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"].startswith("/login"), path
        assert client.get("/runs/x.json").status_code == 401
        page = client.get("/login")
        assert page.status_code == 200 and 'id="no-users"' in page.text
        assert "hub console add-user" in page.text and 'id="login-form"' not in page.text
        token = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
        assert token is not None
        r = client.post(
            "/integrations/x/disable", data={"csrf_token": token.group(1)}, follow_redirects=False
        )
        assert r.status_code == 401  # no session, no action
        r = client.post(
            "/login",
            data={"name": "local", "password": "", "csrf_token": token.group(1)},
            follow_redirects=False,
        )
        assert r.status_code == 401


def test_the_sliding_window_refuses_past_the_limit_until_the_oldest_failure_leaves() -> None:
    from pim_hub.console.ratelimit import SignInLimiter, SlidingWindow

    now = [1000.0]
    window = SlidingWindow(3, 60, clock=lambda: now[0], max_keys=2)
    for step in range(3):
        assert window.retry_after("a") == 0
        window.hit("a")
        now[0] += 10 * (step < 2)  # failures at 1000, 1010, 1020
    assert window.retry_after("a") == pytest.approx(40)  # the one at 1000 leaves at 1060
    now[0] = 1059.0
    assert window.retry_after("a") == pytest.approx(1)
    now[0] = 1060.0
    assert window.retry_after("a") == 0  # sliding: one slot free, not the whole window
    window.hit("a")
    assert window.retry_after("a") == pytest.approx(10)
    # Bounded memory: a third key evicts the stalest.
    window.hit("b")
    window.hit("c")
    assert "a" not in window._events and set(window._events) == {"b", "c"}
    with pytest.raises(ValueError):
        SlidingWindow(0, 60)

    now[0] = 0.0
    limiter = SignInLimiter(per_address=4, per_user=2, window_s=300, clock=lambda: now[0])
    limiter.failed("10.0.0.1", "ana")
    assert limiter.retry_after("10.0.0.1", "ana") == 0
    limiter.failed("10.0.0.2", "ana")
    # The name is limited whoever tries it; other names from the first address are not yet.
    assert limiter.retry_after("10.0.0.3", "ana") == 300
    assert limiter.retry_after("10.0.0.1", "bob") == 0
    limiter.failed("10.0.0.1", "bob")
    limiter.failed("10.0.0.1", "cy")
    limiter.failed("10.0.0.1", "dee")
    now[0] = 0.5
    assert limiter.retry_after("10.0.0.1", "eve") == 300  # the address spent its four (ceil)
    limiter.succeeded("ana")  # ana's own sign-in forgives her name, not the address
    assert limiter.retry_after("10.0.0.3", "ana") == 0
    assert limiter.retry_after("10.0.0.1", "ana") == 300


def test_add_user_prints_the_users_list_with_the_new_user_and_a_hash() -> None:
    import json

    from typer.testing import CliRunner

    from pim_hub.cli.main import app

    existing = json.dumps(
        [
            {"name": "vic", "role": "viewer", "password_hash": hash_password("v", **CHEAP)},
            {"name": "ana", "role": "viewer", "password_hash": hash_password("old", **CHEAP)},
        ]
    )
    out = CliRunner().invoke(
        app,
        ["console", "add-user", "ana", "--role", "operator", "--password-stdin"],
        input="s3cret\n",
        env={"HUB_CONSOLE_USERS": existing},
    )
    assert out.exit_code == 0, out.output
    users = json.loads(out.stdout.strip().splitlines()[0])
    assert [(u["name"], u["role"]) for u in users] == [("vic", "viewer"), ("ana", "operator")]
    assert verify_password("s3cret", users[1]["password_hash"])
    cfg = ConsoleSettings(users=users)  # what the console reads back
    assert authenticate(cfg, "ana", "s3cret") == Identity("ana", "operator")
    bad = CliRunner().invoke(
        app,
        ["console", "add-user", "x", "--role", "admin", "--password-stdin"],
        input="p\n",
        env={"HUB_CONSOLE_USERS": ""},
    )
    assert bad.exit_code == 2 and "viewer or operator" in bad.output
    empty = CliRunner().invoke(
        app, ["console", "add-user", "x", "--password-stdin"], input="\n", env={}
    )
    assert empty.exit_code == 2 and "empty" in empty.output
