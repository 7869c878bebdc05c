"""The console's web application (Starlette, Jinja2 templates, a little vanilla JavaScript).

Every page needs a signed-in user (with no users nor OIDC configured nothing but the sign-in
page is served, and `hub console` refuses to start); failed sign-ins are limited per client
address and per user name; every POST needs the session's CSRF token; every action is
refused to viewers and written to the audit log. All data is escaped by the templates
(autoescape) and no inline script runs (Content-Security-Policy): product data is untrusted.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import urlencode

import jinja2
import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pim_hub.console import actions, data, oidc
from pim_hub.console.auth import Identity, authenticate, csrf_matches, new_csrf_token
from pim_hub.console.cache import Refreshing
from pim_hub.console.ratelimit import SignInLimiter, SlidingWindow
from pim_hub.console.settings import ConsoleSettings
from pim_hub.drivers.discovery import DriverCatalogue, discover
from pim_hub.ops.dead import pending_job_ids
from pim_hub.ops.replay import ReplayError
from pim_hub.ops.trace import TraceError, collect, describe_change
from pim_hub.registry.model import IntegrationError
from pim_hub.runtime.logread import OffsetsError
from pim_hub.runtime.metrics import CONSOLE_SIGN_INS
from pim_hub.runtime.settings import Settings
from pim_hub.schemas.entities import ENTITY_TYPES

logger = logging.getLogger(__name__)

#: No inline script or style, nothing from elsewhere, no framing.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

NAV = [
    ("/", "Overview"),
    ("/entities", "Entities"),
    ("/dead", "Dead letters"),
    ("/integrations", "Integrations"),
    ("/replay", "Replay & resync"),
    ("/invalid", "Invalid snapshots"),
    ("/audit", "Audit log"),
]


class NeedLogin(Exception):
    """The request has no signed-in user: send it to the sign-in page."""


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return "" if value is None else str(value)


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pim_hub.console", "templates"),
        autoescape=True,  # every value is escaped unless a template says otherwise (none does)
        undefined=jinja2.StrictUndefined,
    )
    env.filters["when"] = _when
    env.filters["json"] = _json
    env.filters["change"] = describe_change
    return env


class SecurityHeaders:
    """Adds the Content-Security-Policy and friends to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"same-origin"),
                    (b"cache-control", b"no-store"),
                ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


class Console:
    """The pages and actions, over one hub's settings."""

    def __init__(
        self,
        settings: Settings,
        console: ConsoleSettings,
        catalogue: DriverCatalogue | None = None,
    ) -> None:
        self.settings = settings
        self.console = console
        self.catalogue = catalogue or discover()
        self.env = _environment()
        self.runs = actions.Runs()
        self.overview_figures = Refreshing(
            lambda: data.overview(self.settings, self.catalogue), console.refresh_s, "overview"
        )
        self.dispatch_figures = Refreshing(self._dispatch_figures, console.refresh_s, "dispatch")
        self.provider: oidc.Provider | None = None  # the OIDC discovery document, once read
        self.sign_ins = SignInLimiter(
            console.sign_in_limit_per_address,
            console.sign_in_limit_per_user,
            console.sign_in_window_s,
        )
        self.refusals_audited = SlidingWindow(1, console.sign_in_window_s)

    # identity, CSRF, rendering

    def identity(self, request: Request) -> Identity:
        """The signed-in user; raises NeedLogin without one."""
        user = request.session.get("user")
        role = request.session.get("role")
        if not user or role not in ("viewer", "operator"):
            raise NeedLogin()
        if request.session.get("via") == "oidc":
            if not self.console.oidc_enabled:  # OIDC turned off: its sessions end
                request.session.clear()
                raise NeedLogin()
            return Identity(user, role)  # the role was decided from the claims at sign-in
        # A user removed from the configuration loses access at once.
        known = {u.name: u.role for u in self.console.users}
        if known.get(user) != role:
            request.session.clear()
            raise NeedLogin()
        return Identity(user, role)

    def csrf(self, request: Request) -> str:
        """The session's CSRF token (made on first use)."""
        token = request.session.get("csrf")
        if not token:
            token = new_csrf_token()
            request.session["csrf"] = token
        return str(token)

    async def checked_form(self, request: Request) -> FormData:
        """The POSTed form, after the CSRF check (403 when the token is missing or wrong)."""
        form = await request.form()
        given = form.get("csrf_token") or request.headers.get("x-csrf-token")
        if not csrf_matches(request.session.get("csrf"), given if isinstance(given, str) else None):
            raise HTTPException(403, "CSRF token missing or wrong: reload the page and try again")
        return form

    def allowed(self, who: Identity, action: str, target: str) -> None:
        """403 (audited) when the role may not do the action."""
        if not who.may(action):
            actions.audit(self.settings.require_database(), who, action, target, "refused")
            raise HTTPException(403, f"{who.name} ({who.role}) may not {action}")

    def render(
        self, request: Request, template: str, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        """A page with the layout's context (user, CSRF token, navigation)."""
        try:
            who: Identity | None = self.identity(request)
        except NeedLogin:
            who = None
        html = self.env.get_template(template).render(
            request_path=request.url.path,
            who=who,
            csrf=self.csrf(request),
            nav=NAV,
            **context,
        )
        return HTMLResponse(html, status_code=status_code)

    # sign-in

    async def login_page(self, request: Request) -> Response:
        nxt = _safe_next(request.query_params.get("next") or "/")
        return self.render(request, "login.html", error=None, name="", next=nxt, **self._login())

    def _login(self) -> dict[str, Any]:
        """How the sign-in page offers to sign in (neither: it says how to add a user)."""
        return {"passwords": bool(self.console.users), "oidc": self.console.oidc_enabled}

    def _provider(self) -> oidc.Provider:
        if self.provider is None:
            assert self.console.oidc_issuer is not None
            self.provider = oidc.discover(self.console.oidc_issuer)
        return self.provider

    def _redirect_uri(self, request: Request) -> str:
        return (
            self.console.oidc_redirect_url or f"{str(request.base_url).rstrip('/')}/oidc/callback"
        )

    async def oidc_start(self, request: Request) -> Response:
        """Send the browser to the provider."""
        if not self.console.oidc_enabled:
            raise HTTPException(404, "OIDC sign-in is not configured")
        try:
            provider = await run_in_threadpool(self._provider)
        except oidc.OidcError as exc:
            return self.render(
                request, "message.html", 502, title="Sign-in unavailable", text=str(exc)
            )
        url, attempt = oidc.start(self.console, provider, self._redirect_uri(request))
        request.session["oidc"] = attempt.as_session()
        request.session["oidc_next"] = _safe_next(request.query_params.get("next") or "/")
        return RedirectResponse(url, 303)

    async def oidc_callback(self, request: Request) -> Response:
        """The provider sends the browser back here with a code."""
        if not self.console.oidc_enabled:
            raise HTTPException(404, "OIDC sign-in is not configured")
        pending = request.session.pop("oidc", None)
        nxt = _safe_next(str(request.session.pop("oidc_next", "/")))
        params = request.query_params
        if not isinstance(pending, dict) or not csrf_matches(
            pending.get("state"), params.get("state")
        ):
            raise HTTPException(
                403, "this sign-in was not started here (or was used already): sign in again"
            )
        if params.get("error") or not params.get("code"):
            why = params.get("error_description") or params.get("error") or "no code"
            return self.render(
                request,
                "message.html",
                401,
                title="Not signed in",
                text=f"The provider said: {why}",
            )
        attempt = oidc.Attempt(pending["state"], pending["nonce"], pending["verifier"])
        try:
            claims = await run_in_threadpool(
                oidc.finish,
                self.console,
                self._provider(),
                attempt,
                str(params["code"]),
                self._redirect_uri(request),
            )
        except oidc.OidcError as exc:
            return self.render(request, "message.html", 401, title="Not signed in", text=str(exc))
        name, role = oidc.user_of(self.console, claims)
        if role is None or not name:
            return self.render(
                request,
                "message.html",
                403,
                title="Not allowed",
                text=f"{name or 'This account'} may not use the console: ask for a viewer or operator group.",
            )
        request.session.clear()
        request.session.update(
            {"user": name, "role": role, "via": "oidc", "csrf": new_csrf_token()}
        )
        return RedirectResponse(nxt, 303)

    async def login(self, request: Request) -> Response:
        form = await self.checked_form(request)
        name = str(form.get("name") or "")
        password = str(form.get("password") or "")
        nxt = _safe_next(str(form.get("next") or "/"))
        address = request.client.host if request.client else "unknown"
        wait = self.sign_ins.retry_after(address, name)
        if wait:
            CONSOLE_SIGN_INS.labels("limited").inc()
            # Refused before the password is checked: a guesser learns nothing more. The
            # refusal is audited (who was tried, from where) once per address, name and window:
            # a flood of attempts does not flood the audit log.
            audit_key = f"{address}\n{name[:200]}"
            if not self.refusals_audited.retry_after(audit_key):
                self.refusals_audited.hit(audit_key)
                await run_in_threadpool(
                    actions.audit_sign_in,
                    self.settings.require_database(),
                    name,
                    address,
                    "refused",
                    {"reason": "too many failed sign-ins", "retry_after": wait},
                )
            response = self.render(
                request,
                "login.html",
                429,
                error=f"Too many failed sign-ins: try again in {wait} s.",
                name=name,
                next=nxt,
                **self._login(),
            )
            response.headers["Retry-After"] = str(wait)
            return response
        who = await run_in_threadpool(authenticate, self.console, name, password)
        if who is None:
            CONSOLE_SIGN_INS.labels("wrong").inc()
            self.sign_ins.failed(address, name)
            return self.render(
                request,
                "login.html",
                401,
                error="Wrong user name or password.",
                name=name,
                next=nxt,
                **self._login(),
            )
        CONSOLE_SIGN_INS.labels("ok").inc()
        self.sign_ins.succeeded(name)
        request.session.clear()
        request.session.update(
            {
                "user": who.name,
                "role": who.role,
                "csrf": new_csrf_token(),
                "sid": secrets.token_hex(8),
            }
        )
        return RedirectResponse(nxt, 303)

    async def logout(self, request: Request) -> Response:
        await self.checked_form(request)
        request.session.clear()
        return RedirectResponse("/login", 303)

    # pages

    async def overview(self, request: Request) -> Response:
        self.identity(request)
        view, age = await run_in_threadpool(self.overview_figures.get)
        return self.render(
            request, "overview.html", view=view, age=age, stale=self.overview_figures.last_error
        )

    async def overview_live(self, request: Request) -> Response:
        self.identity(request)
        view, age = await run_in_threadpool(self.overview_figures.get)
        html = self.env.get_template("overview_live.html").render(
            view=view, age=age, stale=self.overview_figures.last_error
        )
        return HTMLResponse(html)

    def _dispatch_figures(self) -> tuple[list[data.GroupRow], list[Any], list[str]]:
        """Consumer groups and dispatcher coverage (broker figures of the integrations page)."""
        from pim_hub.registry.store import list_integrations

        errors: list[str] = []
        try:
            groups = data.group_rows(self.settings, sorted(self.catalogue.drivers))
        except Exception as exc:  # the registry is still worth showing
            groups, errors = [], [f"consumer groups: {exc}"]
        integrations = list_integrations(self.settings.require_database())
        return groups, data.dispatcher_coverage(self.settings, integrations), errors

    async def entities(self, request: Request) -> Response:
        self.identity(request)
        query = (request.query_params.get("q") or "").strip()
        if not query:
            return self.render(
                request, "entities.html", query="", trace=None, error=None, states={}
            )
        try:
            trace = await run_in_threadpool(collect, self.settings, query)
        except (TraceError, OffsetsError) as exc:
            return self.render(
                request, "entities.html", 404, query=query, trace=None, error=str(exc), states={}
            )
        states = await run_in_threadpool(data.entity_states, self.settings.database_url, trace.keys)
        return self.render(
            request, "entities.html", query=query, trace=trace, error=None, states=states
        )

    async def dead(self, request: Request) -> Response:
        who = self.identity(request)
        integration = (request.query_params.get("integration") or "").strip()
        reason = (request.query_params.get("reason") or "").strip()
        view = await run_in_threadpool(
            data.dead_page, self.settings, integration, reason, self.console.dead_letter_limit
        )
        return self.render(
            request,
            "dead.html",
            groups=view.groups,
            error=view.error,
            integration=integration,
            reason=reason,
            limit=self.console.dead_letter_limit,
            entity_of=data.entity_of,
            may_redrive=who.may("redrive"),
        )

    def _group_jobs(self, integration: str, kind: str) -> list[str]:
        """The job ids of one dead-letter group now (the read model caught up first)."""
        data.catch_up_dead(self.settings)
        return pending_job_ids(self.settings.require_database(), integration=integration, kind=kind)

    def _nothing_chosen(self, request: Request) -> Response:
        return self.render(
            request, "message.html", 400, title="Nothing chosen", text="Choose dead letters first."
        )

    async def dead_confirm(self, request: Request) -> Response:
        """What a redrive would send, and the button that sends it."""
        who = self.identity(request)
        form = await self.checked_form(request)
        self.allowed(who, "redrive", "dead letters")
        group_integration, kind = str(form.get("integration") or ""), str(form.get("kind") or "")
        if group_integration and kind:
            # A whole group: counted now, and counted again when sent (it may grow meanwhile).
            job_ids = await run_in_threadpool(self._group_jobs, group_integration, kind)
            return self.render(
                request,
                "dead_confirm.html",
                job_ids=job_ids,
                asked=len(job_ids),
                target=f"{group_integration} / {kind}",
                group=(group_integration, kind),
                changed=None,
            )
        job_ids = [str(j) for j in form.getlist("job_id") if j]
        target = str(form.get("target") or "selection")
        if not job_ids:
            return self._nothing_chosen(request)
        # Count against the read model now: only dead letters not yet redriven are sent.
        pending = set(
            await run_in_threadpool(
                partial(pending_job_ids, self.settings.require_database(), among=job_ids)
            )
        )
        sendable = [j for j in dict.fromkeys(job_ids) if j in pending]
        return self.render(
            request,
            "dead_confirm.html",
            job_ids=sendable,
            asked=len(job_ids),
            target=target,
            group=None,
            changed=None,
        )

    async def dead_redrive(self, request: Request) -> Response:
        who = self.identity(request)
        form = await self.checked_form(request)
        group_integration, kind = str(form.get("integration") or ""), str(form.get("kind") or "")
        target = (
            f"{group_integration} / {kind}"
            if group_integration and kind
            else str(form.get("target") or "selection")
        )
        self.allowed(who, "redrive", target)
        if group_integration and kind:
            job_ids = await run_in_threadpool(self._group_jobs, group_integration, kind)
            expected = str(form.get("expected") or "")
            if str(len(job_ids)) != expected:
                # The group changed since the count was confirmed: confirm the new count.
                return self.render(
                    request,
                    "dead_confirm.html",
                    409,
                    job_ids=job_ids,
                    asked=len(job_ids),
                    target=target,
                    group=(group_integration, kind),
                    changed=expected,
                )
        else:
            job_ids = [str(j) for j in form.getlist("job_id") if j]
        if not job_ids:
            return self._nothing_chosen(request)
        report = await run_in_threadpool(actions.redrive_jobs, self.settings, who, job_ids, target)
        self.overview_figures.invalidate()
        return self.render(request, "dead_done.html", report=report, target=target)

    async def integrations(self, request: Request) -> Response:
        who = self.identity(request)

        def load() -> tuple[list[data.IntegrationView], list[str]]:
            # The registry is read now (an enable shows at once); broker figures may be a
            # few seconds old.
            (groups, needs, errors), _age = self.dispatch_figures.get()
            views = data.integration_views(self.settings, self.catalogue, groups, needs)
            return views, errors

        views, errors = await run_in_threadpool(load)
        return self.render(
            request,
            "integrations.html",
            views=views,
            errors=errors,
            may_toggle=who.may("enable"),
            broken=sorted(self.catalogue.broken.items()),
        )

    async def integration_toggle(self, request: Request) -> Response:
        who = self.identity(request)
        await self.checked_form(request)
        iid = request.path_params["iid"]
        if request.path_params["action"] not in ("enable", "disable"):
            raise HTTPException(404, "use /integrations/ID/enable or /integrations/ID/disable")
        enabled = request.path_params["action"] == "enable"
        self.allowed(who, request.path_params["action"], iid)
        try:
            await run_in_threadpool(
                actions.set_enabled, self.settings, self.catalogue, who, iid, enabled
            )
        except IntegrationError as exc:
            return self.render(request, "message.html", 400, title="Refused", text=str(exc))
        # What the integration needs changed: collect it again on the next page.
        self.dispatch_figures.invalidate()
        self.overview_figures.invalidate()
        return RedirectResponse("/integrations", 303)

    async def replay_page(self, request: Request) -> Response:
        who = self.identity(request)
        from pim_hub.registry.store import list_integrations

        integrations = await run_in_threadpool(list_integrations, self.settings.require_database())
        return self.render(
            request,
            "replay.html",
            integrations=integrations,
            entity_types=sorted(ENTITY_TYPES),
            may_send=who.may("replay"),
            form={},
            error=None,
        )

    def _replay_request(self, form: FormData) -> tuple[str, dict[str, Any]]:
        """The kind (replay or resync) and the validated fields of the replay form."""
        from pim_hub.console.forms import parse_run_form

        return parse_run_form(form, ENTITY_TYPES)

    async def replay_preview(self, request: Request) -> Response:
        """The dry run: how many jobs would be sent, per integration and priority."""
        who = self.identity(request)
        form = await self.checked_form(request)
        try:
            kind, fields = self._replay_request(form)
        except ValueError as exc:
            return await self._replay_error(request, who, str(exc), form)
        self.allowed(who, kind, fields.get("target", ""))
        try:
            report = await run_in_threadpool(self._run, kind, fields, True, None)
        except (ReplayError, OffsetsError, ValueError) as exc:
            return await self._replay_error(request, who, str(exc), form)
        return self.render(
            request, "replay_preview.html", kind=kind, report=report, fields=form.multi_items()
        )

    async def replay_run(self, request: Request) -> Response:
        who = self.identity(request)
        form = await self.checked_form(request)
        try:
            kind, fields = self._replay_request(form)
        except ValueError as exc:
            return await self._replay_error(request, who, str(exc), form)
        self.allowed(who, kind, fields.get("target", ""))
        detail = {k: v for k, v in fields.items() if k != "filter"}
        run = self.runs.start(
            self.settings,
            kind,
            who,
            fields["target"],
            lambda r: self._run(kind, fields, False, r),
            _jsonable(detail),
        )
        return RedirectResponse(f"/runs/{run.run_id}", 303)

    def _run(
        self, kind: str, fields: dict[str, Any], dry_run: bool, run: actions.Run | None
    ) -> Any:
        if kind == "resync":
            return actions.run_resync(
                self.settings, fields["integration"], fields["filter"], dry_run, fields["rate"], run
            )
        options = actions.replay_options(
            fields["integrations"],
            fields["mode"],
            fields["since"],
            fields["until"],
            fields["entity_types"],
            fields["key"],
            dry_run,
            fields["rate"],
        )
        return actions.run_replay(self.settings, options, run)

    async def _replay_error(
        self, request: Request, who: Identity, error: str, form: FormData
    ) -> Response:
        from pim_hub.registry.store import list_integrations

        integrations = await run_in_threadpool(list_integrations, self.settings.require_database())
        return self.render(
            request,
            "replay.html",
            400,
            integrations=integrations,
            entity_types=sorted(ENTITY_TYPES),
            may_send=who.may("replay"),
            form=dict(form.multi_items()),
            error=error,
        )

    async def run_page(self, request: Request) -> Response:
        self.identity(request)
        run = self.runs.get(request.path_params["run_id"])
        if run is None:
            return self.render(
                request,
                "message.html",
                404,
                title="No such run",
                text="This console has no run of that id (it may have restarted).",
            )
        return self.render(request, "run.html", run=run)

    async def run_json(self, request: Request) -> Response:
        self.identity(request)
        run = self.runs.get(request.path_params["run_id"])
        if run is None:
            return JSONResponse({"error": "no such run"}, 404)
        return JSONResponse(run.as_json())

    async def invalid(self, request: Request) -> Response:
        self.identity(request)
        rows = await run_in_threadpool(
            data.invalid_snapshots, self.settings, self.console.invalid_snapshot_limit
        )
        return self.render(request, "invalid.html", rows=rows)

    async def audit(self, request: Request) -> Response:
        self.identity(request)
        rows = await run_in_threadpool(data.audit_log, self.settings.require_database())
        return self.render(request, "audit.html", rows=rows)

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"ok": True})


def _jsonable(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value, default=str))


def _handlers(console: Console) -> dict[Any, Callable[[Request, Exception], Awaitable[Response]]]:
    async def need_login(request: Request, exc: Exception) -> Response:
        if request.method == "GET" and not request.url.path.endswith(".json"):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?{urlencode({'next': _safe_next(target)})}", 303)
        return JSONResponse({"error": "sign in first"}, 401)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return console.render(
            request,
            "message.html",
            exc.status_code,
            title=f"Error {exc.status_code}",
            text=exc.detail,
        )

    async def failure(request: Request, exc: Exception) -> Response:
        # A fault (the broker or the database down) is shown as such; the console goes on.
        logger.exception("console request failed", extra={"path": request.url.path})
        return console.render(
            request,
            "message.html",
            503,
            title="Not available",
            text=f"The hub could not answer: {type(exc).__name__}: {exc}",
        )

    return {NeedLogin: need_login, HTTPException: http_error, Exception: failure}


def _safe_next(path: str) -> str:
    """Only local paths: a sign-in never redirects to another site."""
    if not path.startswith("/") or path.startswith(("//", "/\\")):
        return "/"
    return path


def create_app(
    settings: Settings,
    console_settings: ConsoleSettings,
    catalogue: DriverCatalogue | None = None,
) -> Starlette:
    """The console as an ASGI application."""
    console = Console(settings, console_settings, catalogue)
    secret = (
        console_settings.secret_key.get_secret_value()
        if console_settings.secret_key
        else secrets.token_urlsafe(32)
    )
    routes = [
        Route("/healthz", console.healthz),
        Route("/login", console.login_page, methods=["GET"]),
        Route("/login", console.login, methods=["POST"]),
        Route("/logout", console.logout, methods=["POST"]),
        Route("/oidc/start", console.oidc_start),
        Route("/oidc/callback", console.oidc_callback),
        Route("/", console.overview),
        Route("/overview/live", console.overview_live),
        Route("/entities", console.entities),
        Route("/dead", console.dead),
        Route("/dead/confirm", console.dead_confirm, methods=["POST"]),
        Route("/dead/redrive", console.dead_redrive, methods=["POST"]),
        Route("/integrations", console.integrations),
        Route(
            "/integrations/{iid}/{action:str}",
            console.integration_toggle,
            methods=["POST"],
        ),
        Route("/replay", console.replay_page),
        Route("/replay/preview", console.replay_preview, methods=["POST"]),
        Route("/replay/run", console.replay_run, methods=["POST"]),
        Route("/runs/{run_id}.json", console.run_json),
        Route("/runs/{run_id}", console.run_page),
        Route("/invalid", console.invalid),
        Route("/audit", console.audit),
        Mount("/static", StaticFiles(packages=[("pim_hub.console", "static")]), name="static"),
    ]
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(
            SessionMiddleware,
            secret_key=secret,
            session_cookie="hub_console",
            max_age=console_settings.session_max_age_s,
            # Lax, not Strict: the OIDC provider's redirect back and links to a trace from
            # elsewhere are top-level navigations that must carry the session; every change is
            # a POST, which Lax keeps to the console's own pages, and carries the CSRF token.
            same_site="lax",
            https_only=console_settings.cookies_secure(),
        ),
    ]
    app = Starlette(routes=routes, middleware=middleware, exception_handlers=_handlers(console))
    app.state.console = console
    return app
