"""The console in a real browser: Playwright drives Debian's Chromium (installed on first use by
infra/chromium/ensure-chromium.sh; Playwright never downloads a browser of its own).

Sign in, find a product by SKU and see its trace and diff, redrive its dead job after a
confirmation that states the count and see it delivered, disable its integration and see
fan-out stop, replay with a dry run first, a viewer refused an action, CSRF refused, every
action in the audit log. Screenshots of each page go to CONSOLE_SCREENSHOTS_DIR when set
(`make screenshots` sets it to docs/console), else to the test's temporary directory.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from pim_hub.console.app import create_app
from pim_hub.devstack.embedded import free_port
from pim_hub.devstack.sink import HttpSink
from pim_hub.devstack.stack import query, wait_for
from pim_hub.devstack.supervisor import Supervisor
from pim_hub.drivers.discovery import discover
from pim_hub.registry.model import Integration
from pim_hub.registry.service import upsert_integration
from pim_hub.runtime.settings import Settings
from tests.integration.test_console import (
    OPERATOR_PASSWORD,
    VIEWER_PASSWORD,
    audit_rows,
    console_settings,
)
from tests.integration.test_replay_ops import REFRESH_S, Feed, add_webhook, version

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
#: The flags the browser runs with: headless, and nothing that reaches out on its own.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 60_000


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's Chromium, installed by the project's script when missing (never skipped)."""
    out = subprocess.run(
        ["sh", str(ROOT / "infra" / "chromium" / "ensure-chromium.sh")],
        check=True,
        capture_output=True,
        text=True,
        timeout=900,
    )
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Browser]:
    """One browser for this module, stopped before the next module's tests run (Playwright's
    sync API keeps an event loop of its own while it runs)."""
    # A loaded machine (the whole suite on two cores) makes pages slower than Playwright's
    # 5 s default: every wait gets a generous deadline.
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    where = os.environ.get("CONSOLE_SCREENSHOTS_DIR")
    path = Path(where) if where else tmp_path / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


class ConsoleServer:
    """The console app under uvicorn in a thread of the test process."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="console", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ConsoleServer:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the console did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture
def console_server(hub_settings: Settings, unique: str) -> Iterator[ConsoleServer]:
    """The console with this test's operator and viewer (tests.integration.test_console)."""
    server = ConsoleServer(create_app(hub_settings, console_settings(unique))).start()
    yield server
    server.stop()


@pytest.fixture
def new_context(browser: Browser) -> Iterator[Callable[[], BrowserContext]]:
    """Makes browser contexts (one per person) of a laptop's screen; all closed afterwards."""
    made: list[BrowserContext] = []

    def make() -> BrowserContext:
        context = browser.new_context(viewport={"width": 1366, "height": 900})
        context.set_default_timeout(WAIT_MS)
        made.append(context)
        return context

    yield make
    for context in made:
        context.close()


def sign_in(page: Page, base: str, name: str, password: str) -> Page:
    """Sign in through the form the console sends an anonymous visitor to; returns the page."""
    page.goto(f"{base}/")
    expect(page).to_have_url(f"{base}/login?next=%2F")
    page.fill('input[name="name"]', name)
    page.fill('input[name="password"]', password)
    page.click('#login-form button[type="submit"]')
    expect(page.locator("h1")).to_have_text("Overview", timeout=WAIT_MS)
    return page


def post_from_page(page: Page, path: str, *, with_token: bool) -> int:
    """A POST from the page's own origin, carrying the page's CSRF token (what a form of the
    page sends) or not (a forged request); returns the status."""
    status: int = page.evaluate(
        """async ([path, withToken]) => {
             const token = document.querySelector('meta[name="csrf-token"]').content;
             const body = new URLSearchParams(withToken ? {csrf_token: token} : {});
             return (await fetch(path, {method: 'POST', body})).status;
           }""",
        [path, with_token],
    )
    return status


def test_an_operator_and_a_viewer_use_the_console_in_chromium(
    pipeline: Supervisor,
    console_server: ConsoleServer,
    new_context: Callable[[], BrowserContext],
    hub_settings: Settings,
    database_url: str,
    screenshots: Path,
    unique: str,
) -> None:
    sink = HttpSink(script=[(422, {})]).start()  # the first delivery is refused for good
    base = console_server.url
    try:
        iid = f"web-{unique}"
        other = f"web-other-{unique}"
        secret = f"hush-{unique}"
        upsert_integration(
            database_url,
            discover(),
            Integration(
                iid,
                "Shop webhook",
                "webhook",
                True,
                {
                    "url": f"{sink.url}/{iid}",
                    "secret": secret,
                    "rate_limit": {"requests_per_s": 50, "concurrent": 4},
                },
                None,
                {},
            ),
        )
        time.sleep(REFRESH_S)
        feed = Feed(hub_settings, unique)
        key, sku = feed.key(1), f"SKU-{feed.uuid(1)}"
        feed.publish(1, "Trail runner", version(10))
        feed.publish(1, "Trail runner 2", version(11))

        def status() -> list[str]:
            rows = query(
                database_url,
                "SELECT status FROM deliveries WHERE integration_id = %s ORDER BY occurred_at",
                iid,
            )
            return [r["status"] for r in rows]

        wait_for(
            lambda: sorted(status()) == ["dead", "delivered"],
            timeout=90,
            what="one dead and one delivered job",
            supervisor=pipeline,
        )

        page = new_context().new_page()
        page.goto(f"{base}/login")
        page.screenshot(path=screenshots / "login.png")
        sign_in(page, base, f"op-{unique}", OPERATOR_PASSWORD)
        expect(page.locator("#stages")).to_be_visible()
        expect(page.locator("#integration-counts")).to_contain_text(iid)
        page.screenshot(path=screenshots / "overview.png", full_page=True)

        # Entity search by SKU: trace timeline and the field diff of the update.
        page.click("text=Entities")
        page.fill('#entity-search input[name="q"]', sku)
        page.click("#entity-search button")
        timeline = page.locator("#timeline")
        expect(timeline).to_contain_text("mutation", timeout=WAIT_MS)
        expect(timeline.locator("li.stage-dead-letter")).to_contain_text("http_422")
        update = timeline.locator("li.stage-mutation", has_text="update")
        expect(update.locator("table.diff")).to_contain_text('"Trail runner"')
        expect(update.locator("td.new")).to_contain_text('"Trail runner 2"')
        page.screenshot(path=screenshots / "entity.png", full_page=True)

        # Dead letters: the group, a confirmation stating the count, then the redrive.
        page.goto(f"{base}/dead?integration={iid}")
        group = page.locator(".dead-group", has_text=iid)
        expect(group.locator("h2")).to_contain_text("http_422")
        expect(group.locator("pre.errbody")).to_contain_text("422")
        page.screenshot(path=screenshots / "dead-letters.png", full_page=True)
        group.locator("button.redrive-group").click()
        expect(page.locator("#confirm-count")).to_contain_text("1 job(s) will be sent")
        page.screenshot(path=screenshots / "redrive-confirm.png")
        page.click("#confirm-redrive")
        expect(page.locator("#redrive-result")).to_contain_text("1 job(s) redriven")
        wait_for(
            lambda: status() == ["delivered", "delivered"],
            timeout=90,
            what="the redriven job delivered",
            supervisor=pipeline,
        )
        page.goto(f"{base}/entities?q={sku}")
        expect(page.locator("#deliveries")).not_to_contain_text("dead")
        expect(page.locator("#timeline li.stage-job", has_text="redrive")).to_have_count(1)

        # CSRF: a POST without the session's token is refused.
        assert post_from_page(page, f"/integrations/{iid}/disable", with_token=False) == 403

        # Disable the integration and see fan-out stop.
        page.goto(f"{base}/integrations")
        section = page.locator(f"#integration-{iid}")
        expect(section.locator(".state")).to_have_text("enabled")
        expect(section).to_contain_text("50/s, 4 concurrent, burst 50")
        section.locator("details summary").click()
        expect(section.locator("pre.config")).to_contain_text(f"{sink.url}/{iid}")
        assert secret not in page.content(), "a secret reached the page"
        page.screenshot(path=screenshots / "integrations.png", full_page=True)
        page.once("dialog", lambda dialog: dialog.accept())
        section.locator("button.toggle").click()
        expect(page.locator(f"#integration-{iid} .state")).to_have_text("disabled")
        time.sleep(REFRESH_S)
        feed.publish(2, "After disable", version(12))
        add_webhook(database_url, other, f"{sink.url}/{other}")
        time.sleep(REFRESH_S)
        feed.publish(3, "Watermark", version(13))
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
        keys = query(
            database_url, "SELECT entity_key FROM deliveries WHERE integration_id = %s", iid
        )
        assert {r["entity_key"] for r in keys} == {key}, "fan-out went on after disable"

        # Replay: the dry run counts, then the run sends and shows its progress.
        page.goto(f"{base}/replay")
        form = page.locator("#replay-form")
        form.locator('input[name="since"]').fill("1h")
        form.locator(f'input[name="integration"][value="{other}"]').check()
        form.locator('input[name="key"]').fill(feed.pattern)
        form.locator('select[name="mode"]').select_option("force")
        page.screenshot(path=screenshots / "replay.png", full_page=True)

        def delivered_to_other() -> list[dict[str, Any]]:
            return query(
                database_url,
                "SELECT job_id FROM deliveries WHERE integration_id = %s AND status = 'delivered'",
                other,
            )

        before = {r["job_id"] for r in delivered_to_other()}
        form.locator('button[type="submit"]').click()
        # Four mutations of this test's products: create and update of 1, creates of 2 and 3.
        expect(page.locator("#dry-run-count")).to_contain_text("4 job(s) would be sent")
        page.screenshot(path=screenshots / "replay-dry-run.png")
        page.click("#send-run")
        expect(page.locator("#run .run-state")).to_have_text("done", timeout=WAIT_MS)
        expect(page.locator("#run .run-lines")).to_contain_text("published 4 job(s)")
        # Exactly the run's four jobs are delivered: the dry run before it sent nothing.
        replayed = wait_for(
            lambda: (
                [r for r in delivered_to_other() if r["job_id"] not in before]
                if len(delivered_to_other()) >= len(before) + 4
                else []
            ),
            timeout=90,
            what="the replay's deliveries",
            supervisor=pipeline,
        )
        time.sleep(REFRESH_S)
        assert len(replayed) == 4 and len(delivered_to_other()) == len(before) + 4
        page.screenshot(path=screenshots / "replay-run.png")

        # A snapshot the mutator refuses (its version is not a date): listed with its reason.
        feed.publish(2, "Broken clock", "not-a-date")

        def refused_listed() -> bool:
            page.goto(f"{base}/invalid")
            expect(page.locator("#invalid")).to_be_visible()
            return page.locator("#invalid tr", has_text=feed.key(2)).count() > 0

        wait_for(refused_listed, timeout=90, what="the refused snapshot", supervisor=pipeline)
        expect(page.locator("#invalid tr", has_text=feed.key(2))).to_contain_text("version")
        page.screenshot(path=screenshots / "invalid-snapshots.png", full_page=True)

        # A viewer sees the pages but no action; a forged action is refused and audited.
        vpage = sign_in(new_context().new_page(), base, f"view-{unique}", VIEWER_PASSWORD)
        vpage.goto(f"{base}/integrations")
        expect(vpage.locator(f"#integration-{other}")).to_be_visible()
        expect(vpage.locator("button.toggle")).to_have_count(0)
        assert post_from_page(vpage, f"/integrations/{other}/disable", with_token=True) == 403
        assert query(database_url, "SELECT enabled FROM integrations WHERE id = %s", other) == [
            {"enabled": True}
        ]

        # Every action is in the audit log, shown in the console.
        page.goto(f"{base}/audit")
        audit = page.locator("#audit")
        for action in ("redrive", "disable", "replay"):
            expect(
                audit.locator("tr", has_text=f"op-{unique}").filter(has_text=action)
            ).to_have_count(1)
        expect(audit.locator("tr", has_text=f"view-{unique}")).to_contain_text("refused")
        page.screenshot(path=screenshots / "audit.png", full_page=True)
        mine = [
            (r["action"], r["jobs"], r["outcome"]) for r in audit_rows(database_url, f"op-{unique}")
        ]
        assert mine == [("redrive", 1, "ok"), ("disable", None, "ok"), ("replay", 4, "ok")], mine
    finally:
        sink.stop()


def test_oidc_sign_in_in_chromium_across_sites(
    new_context: Callable[[], BrowserContext], hub_settings: Settings, screenshots: Path
) -> None:
    """The provider (127.0.0.1) and the console (localhost) are different sites, as in
    production: the session must survive the provider's redirect back."""
    from pydantic import SecretStr

    from pim_hub.console.settings import ConsoleSettings
    from tests.unit.console.test_oidc import CLIENT_ID, CLIENT_SECRET, FakeProvider

    provider = FakeProvider().start()
    cfg = ConsoleSettings(
        oidc_issuer=provider.issuer,
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=SecretStr(CLIENT_SECRET),
        oidc_operator_values=["hub-operators"],
    )
    server = ConsoleServer(create_app(hub_settings, cfg)).start()
    try:
        provider.next_user = {"sub": "7", "email": "ana@example.com", "groups": ["hub-operators"]}
        page = new_context().new_page()
        base = f"http://localhost:{server.port}"
        page.goto(f"{base}/audit")
        expect(page.locator("#oidc-sign-in")).to_be_visible()
        page.screenshot(path=screenshots / "login-oidc.png")
        page.click("#oidc-sign-in")
        # The provider's page (another site) sends the browser back: a cross-site navigation.
        page.click("#approve")
        expect(page.locator("h1")).to_have_text("Audit log")
        expect(page.locator("header .user")).to_contain_text("ana@example.com")
        expect(page.locator("header .role")).to_have_text("operator")
    finally:
        server.stop()
        provider.stop()
