"""Starlette app of the Magento sandbox: URL scopes, auth, faults, validation and async bulk."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pim_hub.sandbox.magento.errors import (
    MSG_BAD_CREDENTIALS,
    MSG_DECODING,
    MSG_INTERNAL,
    MSG_TOO_MANY_REQUESTS,
    MagentoError,
    error_body,
    not_found_route,
    render_message,
    unauthorized,
)
from pim_hub.sandbox.magento.faults import FaultConfig, FaultInjector
from pim_hub.sandbox.magento.handlers import ROUTES, TOPICS, Call, acl_resource
from pim_hub.sandbox.magento.spec import (
    ASYNC_RESPONSE_SCHEMA,
    MagentoSpec,
    Operation,
    check_scalar,
    load_spec,
    violation_error,
)
from pim_hub.sandbox.magento.state import (
    STATUS_COMPLETE,
    STATUS_NOT_RETRIABLY_FAILED,
    STATUS_OPEN,
    STATUS_REJECTED,
    STATUS_RETRIABLY_FAILED,
    Bulk,
    BulkOperation,
    MagentoState,
    RequestRecord,
    Scope,
    stamp,
)

logger = logging.getLogger(__name__)

TOKEN_TEMPLATE = "/V1/integration/admin/token"  # noqa: S105 - a route, not a secret
DEFAULT_TOKEN_LIFETIME = 4 * 3600.0  # Magento's admin token lifetime default (hours: 4)
USER_TYPE_INTEGRATION = 1
USER_TYPE_ADMIN = 2
_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH"]


def _served(method: str, template: str) -> bool:
    return (method, template) in ROUTES or (method, template) == ("POST", TOKEN_TEMPLATE)


@dataclass(frozen=True)
class Principal:
    """Who a bearer token belongs to (Magento's user_type and user_id)."""

    user_type: int
    user_id: int


@dataclass(frozen=True)
class _Target:
    scope: Scope
    mode: str  # "sync", "async" or "bulk"
    path: str  # the /V1/... part


class MagentoSandbox:
    """Request pipeline shared by the HTTP endpoint and the simulated bulk consumer."""

    def __init__(
        self,
        state: MagentoState,
        spec: MagentoSpec,
        *,
        admin_user: str,
        admin_password: str,
        integration_token: str | None,
        admin_token_lifetime: float,
        faults: FaultInjector,
        validate_responses: bool,
    ) -> None:
        self.state = state
        self.spec = spec
        self.admin_user = admin_user
        self.admin_password = admin_password
        self.integration_token = integration_token
        self.admin_token_lifetime = admin_token_lifetime
        self.faults = faults
        self.validate_responses = validate_responses
        self.response_violations: list[str] = []

    # ------------------------------------------------------------------ HTTP entry
    async def endpoint(self, request: Request) -> Response:
        """Answer one HTTP request."""
        raw_path = request.url.path
        method = request.method.upper()
        op: Operation | None = None
        target: _Target | None = None
        headers: dict[str, str] = {}
        status: int
        payload: Any
        try:
            if self.state.config.bulk_auto:
                self.run_bulk_consumer(due_only=True)
            target = self._target(raw_path)
            if target.mode == "sync":
                found = self.spec.match(method, target.path)
                if found is None or not _served(method, found[0].template):
                    raise not_found_route()
                op, params = found
                is_auth = op.template == TOKEN_TEMPLATE
                await self._fault(raw_path, is_auth=is_auth)
                body = await self._body(request)
                if is_auth:
                    status, payload = 200, self._token(op, body)
                else:
                    self._authorize(request, op.template)
                    status, payload = 200, self._sync(op, target.scope, params, request, body)
            else:
                op, status, payload = await self._async(method, target, request)
        except MagentoError as exc:
            status, payload, headers = exc.status, exc.body(), exc.headers
        except Exception:
            # Magento masks unexpected exceptions outside developer mode; so does the sandbox,
            # but it logs the traceback so sandbox bugs are not silent.
            logger.exception("sandbox error", extra={"path": raw_path})
            report = f"webapi-{secrets.token_hex(6)}"
            status, payload = 500, error_body(MSG_INTERNAL, {"reportId": report})
        if self.validate_responses:
            problems = self._check_response(op, target, status, payload)
            if problems:
                self.response_violations.extend(problems)
                status, payload = (
                    500,
                    error_body(
                        "Sandbox response violates the document: %details",
                        {"details": "; ".join(problems)},
                    ),
                )
        self.state.record(
            RequestRecord(
                method,
                raw_path,
                target.scope.code if target else "",
                op.template if op else None,
                status,
            )
        )
        return Response(orjson.dumps(payload), status, headers, media_type="application/json")

    def _check_response(
        self, op: Operation | None, target: _Target | None, status: int, payload: Any
    ) -> list[str]:
        if target is not None and target.mode != "sync" and status < 400:
            return self.spec.validate_schema(ASYNC_RESPONSE_SCHEMA, payload)
        return self.spec.validate_response(op, status, payload)

    def _target(self, raw_path: str) -> _Target:
        segments = [s for s in raw_path.split("/") if s]
        if not segments or segments[0] != "rest":
            raise not_found_route()
        rest = segments[1:]
        scope = self.state.scope(None)
        if rest and rest[0] not in ("V1", "async"):
            found = self.state.scope(rest[0])
            if found is None:
                # Magento only strips known store codes; anything else stays in the route.
                raise not_found_route()
            scope, rest = found, rest[1:]
        mode = "sync"
        if rest[:2] == ["async", "bulk"]:
            mode, rest = "bulk", rest[2:]
        elif rest[:1] == ["async"]:
            mode, rest = "async", rest[1:]
        if not rest or rest[0] != "V1" or scope is None:
            raise not_found_route()
        return _Target(scope, mode, "/" + "/".join(rest))

    async def _fault(self, path: str, *, is_auth: bool) -> None:
        fault = self.faults.draw(path, is_auth=is_auth)
        if fault.delay > 0:
            await asyncio.sleep(fault.delay)
        if fault.status is None:
            return
        if fault.status == 429:
            retry = fault.retry_after if fault.retry_after is not None else 1.0
            raise MagentoError(
                429, MSG_TOO_MANY_REQUESTS, headers={"Retry-After": str(max(1, round(retry)))}
            )
        raise MagentoError(
            fault.status, MSG_INTERNAL, {"reportId": f"webapi-{secrets.token_hex(6)}"}
        )

    async def _body(self, request: Request) -> Any:
        raw = await request.body()
        if not raw.strip():
            # Magento reads an empty body as no arguments, so required fields are reported.
            return {}
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise MagentoError(400, MSG_DECODING, {"details": str(exc)}) from exc

    def _authorize(self, request: Request, template: str) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and token:
            if self.integration_token is not None and secrets.compare_digest(
                token, self.integration_token
            ):
                return Principal(USER_TYPE_INTEGRATION, 1)
            admin = self.state.admin_token(token)
            if admin is not None:
                return Principal(USER_TYPE_ADMIN, admin.user_id)
        raise unauthorized(acl_resource(template))

    def _token(self, op: Operation, body: Any) -> str:
        found = self.spec.validate_body(op, body)
        if found:
            raise violation_error(found)
        ok_user = secrets.compare_digest(str(body["username"]), self.admin_user)
        ok_pass = secrets.compare_digest(str(body["password"]), self.admin_password)
        if not (ok_user and ok_pass):
            raise MagentoError(401, MSG_BAD_CREDENTIALS)
        token = secrets.token_hex(16)
        self.state.issue_token(token, self.admin_user, self.admin_token_lifetime)
        return token

    def _check_params(self, op: Operation, params: dict[str, str], query: dict[str, str]) -> None:
        for name, kind in op.path_params.items():
            problem = check_scalar(name, params.get(name, ""), kind)
            if problem:
                raise violation_error([problem])
        for name, kind in op.query_params.items():
            if name in query:
                problem = check_scalar(name, query[name], kind)
                if problem:
                    raise violation_error([problem])

    def _sync(
        self, op: Operation, scope: Scope, params: dict[str, str], request: Request, body: Any
    ) -> Any:
        query = dict(request.query_params)
        self._check_params(op, params, query)
        if op.method in ("GET", "DELETE"):
            body = None
        else:
            found = self.spec.validate_body(op, body)
            if found:
                raise violation_error(found)
        return self.call(op, scope, params, query, body)

    def call(
        self, op: Operation, scope: Scope, params: dict[str, str], query: dict[str, str], body: Any
    ) -> Any:
        """Run the handler of a validated request."""
        handler = ROUTES[(op.method, op.template)]
        # One lock around the whole call: a write and the JSON built from it stay consistent
        # while a test thread inspects the state.
        with self.state.locked():
            return handler(Call(self.state, scope, params, query, body))

    # ------------------------------------------------------------------ async and bulk
    async def _async(
        self, method: str, target: _Target, request: Request
    ) -> tuple[Operation, int, Any]:
        if method == "GET":
            raise not_found_route()
        if target.mode == "bulk":
            found_bulk = self.spec.match_bulk(method, target.path)
            if found_bulk is None or (method, found_bulk[0].template) not in ROUTES:
                raise not_found_route()
            op, by_params = found_bulk
            fixed: dict[str, str] = {}
        else:
            found = self.spec.match(method, target.path)
            if found is None or (method, found[0].template) not in ROUTES:
                raise not_found_route()
            op, fixed = found
            by_params = []
        await self._fault(request.url.path, is_auth=False)
        principal = self._authorize(request, op.template)
        body = await self._body(request)
        if target.mode == "bulk":
            if not isinstance(body, list) or not body:
                raise MagentoError(
                    400,
                    'Error occurred during "%fieldName" processing. The request body must be a '
                    "non-empty list of request items.",
                    {"fieldName": "body"},
                )
            items = body
        else:
            items = [body]
        checked = []
        for index, item in enumerate(items):
            if index:
                # Magento serves requests side by side: a long bulk request must not hold
                # the small ones of other clients back while its items are validated.
                await asyncio.sleep(0)
            checked.append(self._check_item(op, item, fixed, by_params))
        return op, 202, self._accept_bulk(op, target.scope, principal, items, checked)

    def _check_item(
        self, op: Operation, item: Any, fixed: dict[str, str], by_params: list[str]
    ) -> tuple[dict[str, str], Any, MagentoError | None]:
        """An item's path parameters, its body without them, and why it is rejected (if it is)."""
        params = dict(fixed)
        problem: MagentoError | None = None
        for name in by_params:
            value = item.get(name) if isinstance(item, dict) else None
            if value is None and name == "sku" and isinstance(item, dict):
                value = (item.get("product") or {}).get("sku")
            if value is None:
                problem = MagentoError(
                    400, '"%fieldName" is required. Enter and try again.', {"fieldName": name}
                )
                break
            params[name] = str(value)
        body = item
        if problem is None and isinstance(item, dict) and by_params:
            body = {k: v for k, v in item.items() if k not in by_params}
        if problem is None:
            found = self.spec.validate_body(op, body)
            if found:
                problem = violation_error(found)
        return params, body, problem

    def _accept_bulk(
        self,
        op: Operation,
        scope: Scope,
        principal: Principal,
        items: list[Any],
        checked: list[tuple[dict[str, str], Any, MagentoError | None]],
    ) -> dict[str, Any]:
        now = self.state.clock()
        bulk_uuid = str(uuid.uuid4())
        topic = TOPICS.get((op.method, op.template), f"async.{op.operation_id.lower()}")
        bulk = Bulk(
            bulk_uuid,
            principal.user_type,
            principal.user_id,
            f"Topic {topic}",
            stamp(now),
        )
        request_items: list[dict[str, Any]] = []
        for index, (item, (params, body, problem)) in enumerate(zip(items, checked, strict=True)):
            data_hash = hashlib.sha256(orjson.dumps(item)).hexdigest()
            operation = BulkOperation(
                id=self.state.next_operation_id(),
                bulk_uuid=bulk_uuid,
                topic_name=topic,
                method=op.method,
                template=op.template,
                path_params=params,
                store_code=scope.code,
                body=body,
                status=STATUS_OPEN,
                ready_at=now + self.state.config.bulk_delay,
            )
            if problem is not None:
                message = render_message(problem.message, problem.parameters)
                operation.status = STATUS_REJECTED
                operation.result_message = message
                operation.error_code = problem.status
                request_items.append(
                    {"id": index, "data_hash": None, "status": "rejected", "error_message": message}
                )
            else:
                request_items.append({"id": index, "data_hash": data_hash, "status": "accepted"})
            bulk.operations.append(operation)
        self.state.add_bulk(bulk)
        if self.state.config.bulk_auto and self.state.config.bulk_delay <= 0:
            self.run_bulk_consumer(due_only=True)
        return {
            "bulk_uuid": bulk_uuid,
            "request_items": request_items,
            "errors": any(r["status"] == "rejected" for r in request_items),
        }

    def run_bulk_consumer(self, *, due_only: bool = False) -> int:
        """Process open bulk operations like `async.operations.all`; returns how many ran."""
        ran = 0
        with self.state.locked():
            for operation in self.state.open_operations(due_only=due_only):
                self._process(operation)
                ran += 1
        return ran

    def _process(self, operation: BulkOperation) -> None:
        if self.faults.bulk_operation_fails():
            operation.status = STATUS_RETRIABLY_FAILED
            operation.result_message = "The operation failed temporarily. Try again later."
            operation.error_code = 500
            return
        op = self.spec.operation(operation.method, operation.template)
        scope = self.state.scope(operation.store_code) or self.state.scope(None)
        assert scope is not None  # the default scope always resolves
        try:
            result = self.call(op, scope, operation.path_params, {}, operation.body)
        except MagentoError as exc:
            # Input errors must be fixed by the sender (3); server-side ones may pass later (2).
            retriable = exc.status >= 500
            operation.status = STATUS_RETRIABLY_FAILED if retriable else STATUS_NOT_RETRIABLY_FAILED
            operation.result_message = render_message(exc.message, exc.parameters)
            operation.error_code = exc.status
            return
        operation.status = STATUS_COMPLETE
        operation.result_message = f"Service execution success {op.operation_id}"
        operation.error_code = 0
        operation.result_serialized_data = orjson.dumps(result).decode()


def create_app(
    state: MagentoState | None = None,
    *,
    spec_path: str | Path | None = None,
    admin_user: str = "admin",
    admin_password: str = "admin123",  # noqa: S107 - the sandbox's documented demo login
    integration_token: str | None = None,
    admin_token_lifetime: float = DEFAULT_TOKEN_LIFETIME,
    faults: FaultConfig | FaultInjector | None = None,
    validate_responses: bool = False,
) -> Starlette:
    """Build the sandbox ASGI app.

    Args:
        state: the catalogue to serve (a fresh default one when None); keep a reference to
            inspect it. Also reachable as `app.state.magento`.
        spec_path: the Magento admin document; default: the copy shipped with the sandbox.
        admin_user: username accepted by `POST /V1/integration/admin/token`.
        admin_password: password accepted by `POST /V1/integration/admin/token`.
        integration_token: an integration access token accepted as a Bearer token (Magento's
            `oauth/consumer/enable_integration_as_bearer` = 1); None disables it.
        admin_token_lifetime: seconds an admin token stays valid (0 makes every token expire).
        faults: random or scripted faults (`app.state.faults` is the injector).
        validate_responses: check every response against the document and answer 500 with the
            problems when the sandbox itself breaks the contract (for tests).

    Returns:
        The Starlette app; `app.state.sandbox.run_bulk_consumer()` drains async operations.
    """
    state = state or MagentoState()
    injector = faults if isinstance(faults, FaultInjector) else FaultInjector(faults)
    sandbox = MagentoSandbox(
        state,
        load_spec(spec_path),
        admin_user=admin_user,
        admin_password=admin_password,
        integration_token=integration_token,
        admin_token_lifetime=admin_token_lifetime,
        faults=injector,
        validate_responses=validate_responses,
    )
    state.bulk_consumer = sandbox.run_bulk_consumer
    app = Starlette(routes=[Route("/{path:path}", sandbox.endpoint, methods=_METHODS)])
    app.state.magento = state
    app.state.faults = injector
    app.state.sandbox = sandbox
    return app
