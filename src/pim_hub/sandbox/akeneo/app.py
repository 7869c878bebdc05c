"""Starlette app simulating the Akeneo REST API (token, products-uuid, catalogue structure)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import random
import secrets
import struct
import time
import zlib
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pim_hub.sandbox.akeneo.catalogue import Catalogue, Json
from pim_hub.sandbox.akeneo.control import control_routes

API = "/api/rest/v1"
MAX_LIMIT = 100
# Akeneo refuses `page` pagination beyond 10,000 items and asks for search_after instead.
MAX_PAGE_ITEMS = 10_000
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
#: base URL written into pre-rendered items when the serving address is not known
_PLACEHOLDER = "http://sandbox.invalid"

T = TypeVar("T")
U = TypeVar("U")
Handler = Callable[[Request], Awaitable[Response]]


class JsonResponse(Response):
    """JSON response rendered with orjson (pages of 100 products are ~500 KB)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class ApiError(Exception):
    """An error answered in Akeneo's shape: {"code": status, "message": ...}."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """Akeneo's error body for a status."""
    return JsonResponse({"code": status, "message": message}, status_code=status, headers=headers)


@dataclass
class FaultConfig:
    """Injected failures; mutable at runtime (tests flip rates between requests).

    Attributes:
        rate_429: share of API requests answered 429 with `Retry-After`.
        retry_after: seconds put in `Retry-After`.
        rate_5xx: share of API requests answered `status_5xx`.
        status_5xx: the 5xx status to answer.
        latency: seconds added before every API answer.
        max_concurrency: more requests in flight than this get 429 (Akeneo allows 4).
        include_token: whether the token route suffers the faults too.
        scripted: statuses to answer to the next requests, in order (deterministic tests).
    """

    rate_429: float = 0.0
    retry_after: int = 1
    rate_5xx: float = 0.0
    status_5xx: int = 500
    latency: float = 0.0
    max_concurrency: int | None = None
    include_token: bool = False
    seed: int = 0
    scripted: deque[int] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def fail_next(self, status: int, count: int = 1) -> None:
        """Answer `status` to the next `count` requests."""
        self.scripted.extend([status] * count)

    def pick(self) -> int | None:
        """The fault status for this request, or None to serve it."""
        if self.scripted:
            return self.scripted.popleft()
        if self.rate_429 and self._rng.random() < self.rate_429:
            return 429
        if self.rate_5xx and self._rng.random() < self.rate_5xx:
            return self.status_5xx
        return None


@dataclass
class TokenStore:
    """Issued access and refresh tokens with their expiry (seconds on `clock`)."""

    access_lifetime: float = 3600.0
    refresh_lifetime: float = 1_209_600.0
    clock: Callable[[], float] = time.time
    access: dict[str, float] = field(default_factory=dict)
    refresh: dict[str, float] = field(default_factory=dict)

    def issue(self) -> Json:
        """A new token pair in the token route's body shape."""
        now = self.clock()
        # Drop expired tokens so a long benchmark does not grow the store without bound.
        self.access = {t: exp for t, exp in self.access.items() if exp > now}
        self.refresh = {t: exp for t, exp in self.refresh.items() if exp > now}
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self.access[access] = now + self.access_lifetime
        self.refresh[refresh] = now + self.refresh_lifetime
        return {
            "access_token": access,
            "expires_in": int(self.access_lifetime),
            "token_type": "bearer",
            "scope": None,
            "refresh_token": refresh,
        }

    def check(self, token: str) -> str | None:
        """None if the access token is valid, else the 401 message."""
        expiry = self.access.get(token)
        if expiry is None:
            return "The access token provided is invalid."
        if expiry <= self.clock():
            return "The access token provided has expired."
        return None

    def use_refresh(self, token: str) -> bool:
        """Consume a refresh token; Akeneo rotates it, so each one works once."""
        expiry = self.refresh.pop(token, None)
        return expiry is not None and expiry > self.clock()

    def expire_all(self) -> None:
        """Expire every access token now (tests of the client's refresh path)."""
        now = self.clock()
        self.access = dict.fromkeys(self.access, now)


# ------------------------------------------------------------------------- helpers
def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _href(request: Request, path: str, params: dict[str, Any] | None = None) -> dict[str, str]:
    query = f"?{urlencode(params)}" if params else ""
    return {"href": f"{_base(request)}{path}{query}"}


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ApiError(422, f'The "{name}" parameter must be an integer.') from exc


def _limit(request: Request) -> int:
    limit = _int_param(request, "limit", 10)
    if limit > MAX_LIMIT:
        raise ApiError(422, f"You cannot request more than {MAX_LIMIT} items.")
    if limit < 1:
        raise ApiError(422, "You cannot request less than 1 item.")
    return limit


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "true")


def _parse_search(raw: Any) -> dict[str, list[Json]]:
    """The `search` filter: URL-encoded JSON (query) or string/object (POST search body)."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, "Search query parameter should be valid JSON.") from exc
    if not isinstance(raw, dict) or not all(
        isinstance(v, list) and all(isinstance(c, dict) and "operator" in c for c in v)
        for v in raw.values()
    ):
        raise ApiError(
            422,
            "Structure of filter should respect this structure: "
            '{"property":[{"operator":"<operator>","value":"<value>"}]}.',
        )
    return raw


def _parse_time(prop: str, value: Any) -> datetime:
    try:
        return datetime.strptime(str(value), _TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError as exc:
        raise ApiError(
            422,
            f'Property "{prop}" expects a string with the format "yyyy-mm-dd H:i:s" as data, '
            f'"{value}" given.',
        ) from exc


def _unsupported(prop: str, op: str) -> ApiError:
    return ApiError(
        422, f'Filter on property "{prop}" is not supported or does not support operator "{op}"'
    )


def _time_test(prop: str, crit: Json, now: datetime) -> Callable[[datetime], bool]:
    """A predicate on a timestamp for one `updated`/`created` criterion."""
    op, value = str(crit["operator"]).upper(), crit.get("value")
    if op in ("BETWEEN", "NOT BETWEEN"):
        if not isinstance(value, list) or len(value) != 2:
            raise ApiError(422, f'Property "{prop}" expects an array with 2 elements as data.')
        low, high = _parse_time(prop, value[0]), _parse_time(prop, value[1])
        if op == "BETWEEN":
            return lambda t: low <= t <= high
        return lambda t: not low <= t <= high
    if op == "SINCE LAST N DAYS":
        if not isinstance(value, int):
            raise ApiError(422, f'Property "{prop}" expects an integer as data.')
        since = now - timedelta(days=value)
        return lambda t: t >= since
    at = _parse_time(prop, value)
    tests: dict[str, Callable[[datetime], bool]] = {
        ">": lambda t: t > at,
        "<": lambda t: t < at,
        "=": lambda t: t.replace(microsecond=0) == at,
        "!=": lambda t: t.replace(microsecond=0) != at,
    }
    if op not in tests:
        raise _unsupported(prop, op)
    return tests[op]


def _list_test(prop: str, crit: Json) -> Callable[[Any], bool]:
    """A predicate on a code (or list of codes) for IN / NOT IN / = / != / EMPTY criteria."""
    op, value = str(crit["operator"]).upper(), crit.get("value")

    def as_set(v: Any) -> set[Any]:
        return set(v) if isinstance(v, list) else {v}

    if op in ("IN", "NOT IN", "IN OR UNCLASSIFIED"):
        if not isinstance(value, list):
            raise ApiError(422, f'Property "{prop}" expects an array as data, "{value}" given.')
        wanted = set(value)
        if op == "IN":
            return lambda v: bool(as_set(v) & wanted)
        if op == "NOT IN":
            return lambda v: not as_set(v) & wanted
        return lambda v: not v or bool(as_set(v) & wanted)
    if op == "=":
        return lambda v: v == value
    if op == "!=":
        return lambda v: v != value
    if op in ("EMPTY", "UNCLASSIFIED"):
        return lambda v: not v
    if op == "NOT EMPTY":
        return lambda v: bool(v)
    raise _unsupported(prop, op)


def _via(test: Callable[[U], bool], get: Callable[[T], U]) -> Callable[[T], bool]:
    """Compose a predicate with an accessor (a closure per criterion, no late binding)."""
    return lambda item: test(get(item))


def _created_of(product: Json) -> datetime:
    return datetime.fromisoformat(product["created"])


_PRODUCT_FIELDS = {"enabled", "family", "categories", "parent", "created"}


@dataclass
class _ProductQuery:
    """A parsed product search: cheap checks (uuid, updated) and checks needing the product."""

    uuids: list[int] | None = None
    on_index: list[Callable[[int], bool]] = field(default_factory=list)
    on_product: list[Callable[[Json], bool]] = field(default_factory=list)


def _product_query(catalogue: Catalogue, search: dict[str, list[Json]]) -> _ProductQuery:
    query = _ProductQuery()
    now = datetime.now(UTC)
    for prop, criteria in search.items():
        for crit in criteria:
            op = str(crit["operator"]).upper()
            if prop == "uuid":
                test = _list_test(prop, crit)
                if op == "IN":
                    value = crit["value"]
                    if len(value) > 800:
                        raise ApiError(422, "You cannot filter on more than 800 values.")
                    found = {catalogue.product_index(str(u)) for u in value}
                    query.uuids = sorted(i for i in found if i is not None)
                else:
                    query.on_index.append(_via(test, catalogue.product_uuid))
            elif prop == "updated":
                # Akeneo also returns variants whose parent model matches the updated filter.
                ttest = _time_test(prop, crit, now)
                query.on_index.append(_via(ttest, catalogue.effective_updated))
            elif prop == "created":
                ttest = _time_test(prop, crit, now)
                query.on_product.append(_via(ttest, _created_of))
            elif prop in _PRODUCT_FIELDS:
                test = _list_test(prop, crit)
                query.on_product.append(_via(test, itemgetter(prop)))
            else:
                raise _unsupported(prop, op)
    return query


def _matching_products(catalogue: Catalogue, query: _ProductQuery, start: int) -> Iterator[Json]:
    """Products matching `query` with index >= start, ascending, generated lazily."""
    indexes: Iterator[int]
    if query.uuids is not None:
        indexes = (n for n in query.uuids if n >= start)
    else:
        indexes = catalogue.iter_product_indexes(start)
    for n in indexes:
        if all(test(n) for test in query.on_index):
            product = catalogue.product_at(n)
            if product is not None and all(test(product) for test in query.on_product):
                yield product


class _RenderBase:
    """Stands in for a request when rendering ahead of time: only its base URL is read."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url


def _filters_values(params: dict[str, str]) -> bool:
    return bool(params.get("attributes") or params.get("locales") or params.get("scope"))


def _count_products(catalogue: Catalogue, query: _ProductQuery) -> int:
    """Number of products matching `query`; generates products only for the checks needing them."""
    if query.on_product:
        return sum(1 for _ in _matching_products(catalogue, query, 0))
    indexes = query.uuids if query.uuids is not None else catalogue.iter_product_indexes(0)
    tests = query.on_index
    return sum(1 for n in indexes if all(test(n) for test in tests))


def _project(entity: Json, request: Request, params: dict[str, str], media: frozenset[str]) -> Json:
    """Filter values by attributes/locales/scope and add media download links (copying)."""
    if not _filters_values(params):
        # Nothing to filter (the sync's case): copy only the media entries, which get links.
        own: dict[str, list[Json]] = entity["values"]
        if all(own.values()):
            linked = dict(own)
            for code in media.intersection(own):
                linked[code] = [
                    {
                        **e,
                        "_links": {
                            "download": _href(request, f"{API}/media-files/{e['data']}/download")
                        },
                    }
                    for e in own[code]
                ]
            return {**entity, "values": linked}
    attributes = set(params["attributes"].split(",")) if params.get("attributes") else None
    locales = set(params["locales"].split(",")) if params.get("locales") else None
    scope = params.get("scope") or None
    values: dict[str, list[Json]] = {}
    for code, entries in entity["values"].items():
        if attributes is not None and code not in attributes:
            continue
        kept = [
            e
            for e in entries
            if (locales is None or e["locale"] is None or e["locale"] in locales)
            and (scope is None or e["scope"] is None or e["scope"] == scope)
        ]
        if code in media:
            kept = [
                {
                    **e,
                    "_links": {
                        "download": _href(request, f"{API}/media-files/{e['data']}/download")
                    },
                }
                for e in kept
            ]
        if kept:
            values[code] = kept
    return {**entity, "values": values}


def _png(seed_text: str) -> bytes:
    """A tiny valid 8x8 PNG whose colour depends on the media code (so downloads differ)."""
    digest = zlib.crc32(seed_text.encode())
    pixel = bytes([(digest >> 16) & 255, (digest >> 8) & 255, digest & 255])
    raw = b"".join(b"\x00" + pixel * 8 for _ in range(8))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


# ------------------------------------------------------------------------- the app
def create_app(
    catalogue: Catalogue,
    *,
    client_id: str,
    secret: str,
    username: str,
    password: str,
    faults: FaultConfig | None = None,
    token_lifetime: float = 3600.0,
    refresh_lifetime: float = 1_209_600.0,
    clock: Callable[[], float] = time.time,
    prerender: bool = False,
    base_url: str | None = None,
) -> Starlette:
    """The sandbox ASGI app. State for tests: `app.state.catalogue`, `.faults`, `.tokens`, `.stats`.

    Args:
        catalogue: the catalogue to serve (edit it directly; the app reads it on each request).
        client_id, secret: the connection's credentials (HTTP Basic on the token route).
        username, password: the API user (password grant).
        faults: failure injection; mutable while the app runs.
        token_lifetime, refresh_lifetime: seconds; small values let tests force expiry.
        clock: seconds clock for token expiry (a fake one makes expiry tests instant).
        prerender: render every generated product once, now (compressed, ~1.4 KB each), so
            product pages are spliced instead of generated (benchmarks of the sync).
        base_url: the URL clients will use, written into pre-rendered links as they are
            (another one still works: it is substituted when a page is served).
    """
    fault = faults or FaultConfig()
    tokens = TokenStore(token_lifetime, refresh_lifetime, clock)
    stats: Counter[tuple[str, int]] = Counter()
    in_flight = 0
    media = catalogue.media_attributes

    def guarded(handler: Handler, *, auth: bool = True, faulty: bool = True) -> Handler:
        async def endpoint(request: Request) -> Response:
            nonlocal in_flight
            in_flight += 1
            try:
                response = await _serve(request, handler, auth, faulty)
            finally:
                in_flight -= 1
            route = request.scope.get("route")
            stats[(getattr(route, "path", request.url.path), response.status_code)] += 1
            return response

        return endpoint

    async def _serve(request: Request, handler: Handler, auth: bool, faulty: bool) -> Response:
        if faulty:
            if fault.latency > 0:
                await asyncio.sleep(fault.latency)
            status = fault.pick()
            if status is None and fault.max_concurrency and in_flight > fault.max_concurrency:
                status = 429
            if status == 429:
                return error_response(
                    429, "Too many requests.", {"Retry-After": str(fault.retry_after)}
                )
            if status is not None:
                return error_response(status, "An unexpected error occurred (sandbox fault).")
        if auth:
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token:
                return error_response(401, "Authentication is required")
            problem = tokens.check(token.strip())
            if problem:
                return error_response(401, problem)
        try:
            return await handler(request)
        except ApiError as exc:
            return error_response(exc.status, exc.message, exc.headers)

    # ---------------------------------------------------------------- token
    async def token(request: Request) -> Response:
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        try:
            given_id, _, given_secret = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            given_id = given_secret = ""
        if scheme.lower() != "basic" or not (
            secrets.compare_digest(given_id, client_id)
            and secrets.compare_digest(given_secret, secret)
        ):
            raise ApiError(
                422,
                'Parameter "client_id" is missing or does not match any client, '
                "or secret is invalid",
            )
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        raw = await request.body()
        if content_type == "application/json":
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise ApiError(400, "Invalid json message received") from exc
        elif content_type == "application/x-www-form-urlencoded":
            body = dict(parse_qsl(raw.decode()))
        else:
            raise ApiError(
                415,
                f"'{content_type}' in 'Content-type' header is not valid. "
                "Only 'application/json' is allowed.",
            )
        if not isinstance(body, dict):
            raise ApiError(400, "Invalid json message received")
        grant = body.get("grant_type")
        if grant == "password":
            if not (
                secrets.compare_digest(str(body.get("username", "")), username)
                and secrets.compare_digest(str(body.get("password", "")), password)
            ):
                raise ApiError(422, "No user found for the given username and password")
        elif grant == "refresh_token":
            if not tokens.use_refresh(str(body.get("refresh_token", ""))):
                raise ApiError(422, "Refresh token is invalid or has expired")
        else:
            raise ApiError(
                422, 'Parameter "grant_type" is required and must be "password" or "refresh_token"'
            )
        return JsonResponse(tokens.issue())

    # ---------------------------------------------------------------- lists
    def page_list(request: Request, path: str, items: list[Json]) -> Response:
        """Page pagination over a small in-memory list (structure endpoints)."""
        limit = _limit(request)
        page = _int_param(request, "page", 1)
        if page < 1:
            raise ApiError(422, "The page number must be greater than 0.")
        start = (page - 1) * limit
        chunk = items[start : start + limit]
        params = {k: v for k, v in request.query_params.items() if k not in ("page", "limit")}
        links: Json = {
            "self": _href(request, path, {**params, "page": page, "limit": limit}),
            "first": _href(request, path, {**params, "page": 1, "limit": limit}),
        }
        if page > 1:
            links["previous"] = _href(request, path, {**params, "page": page - 1, "limit": limit})
        if start + limit < len(items):
            links["next"] = _href(request, path, {**params, "page": page + 1, "limit": limit})
        body: Json = {"_links": links, "current_page": page}
        if _truthy(request.query_params.get("with_count")):
            body["items_count"] = len(items)
        body["_embedded"] = {
            "items": [
                {"_links": {"self": _href(request, f"{path}/{i['code']}")}, **i} for i in chunk
            ]
        }
        return JsonResponse(body)

    def code_search(request: Request, items: list[Json]) -> list[Json]:
        """The `search` filters the structure endpoints accept (code IN, parent =, enabled =)."""
        search = _parse_search(request.query_params.get("search"))
        out = items
        for prop, criteria in search.items():
            if prop not in ("code", "parent", "enabled"):
                raise _unsupported(prop, str(criteria[0]["operator"]) if criteria else "")
            for crit in criteria:
                test = _list_test(prop, crit)
                out = [i for i in out if test(i.get(prop))]
        return out

    def structure(path: str, items: Callable[[], list[Json]], label: str) -> list[Route]:
        async def listing(request: Request) -> Response:
            found = code_search(request, items())
            if path == f"{API}/categories" and not _truthy(
                request.query_params.get("with_position")
            ):
                found = [{k: v for k, v in c.items() if k != "position"} for c in found]
            return page_list(request, path, found)

        async def single(request: Request) -> Response:
            code = request.path_params["code"]
            for item in items():
                if item["code"] == code:
                    return JsonResponse(item)
            raise ApiError(404, f'{label} "{code}" does not exist.')

        return [
            Route(path, guarded(listing), methods=["GET"]),
            Route(f"{path}/{{code}}", guarded(single), methods=["GET"]),
        ]

    def family_variants(request: Request) -> list[Json]:
        family = request.path_params["family_code"]
        if family not in catalogue.family_variants:
            raise ApiError(404, f'Family "{family}" does not exist.')
        return catalogue.family_variants[family]

    async def variants_list(request: Request) -> Response:
        family = request.path_params["family_code"]
        return page_list(request, f"{API}/families/{family}/variants", family_variants(request))

    async def variant_get(request: Request) -> Response:
        for v in family_variants(request):
            if v["code"] == request.path_params["code"]:
                return JsonResponse(v)
        raise ApiError(404, f'Family variant "{request.path_params["code"]}" does not exist.')

    def options(request: Request) -> list[Json]:
        attribute = request.path_params["attribute_code"]
        if attribute not in {a["code"] for a in catalogue.attributes}:
            raise ApiError(404, f'Attribute "{attribute}" does not exist.')
        found = catalogue.attribute_options.get(attribute)
        if found is None:
            raise ApiError(
                404,
                f'Attribute "{attribute}" does not support options. Only attributes of '
                'type "pim_catalog_simpleselect", "pim_catalog_multiselect" support options.',
            )
        return found

    async def options_list(request: Request) -> Response:
        attribute = request.path_params["attribute_code"]
        return page_list(request, f"{API}/attributes/{attribute}/options", options(request))

    async def option_get(request: Request) -> Response:
        for o in options(request):
            if o["code"] == request.path_params["code"]:
                return JsonResponse(o)
        raise ApiError(404, f'Attribute option "{request.path_params["code"]}" does not exist.')

    # ---------------------------------------------------------------- products
    async def products_page(request: Request, search_raw: Any, params: dict[str, str]) -> Response:
        path = request.url.path
        limit = _limit(request)
        query = _product_query(catalogue, _parse_search(search_raw))
        pagination = params.get("pagination_type", "page")
        keep = {k: v for k, v in params.items() if k not in ("page", "search_after", "limit")}
        body: Json
        if pagination == "search_after":
            cursor = params.get("search_after")
            start = 0
            if cursor:
                # decode_uuid also accepts a product deleted since the previous page.
                after = catalogue.decode_uuid(cursor)
                if after is None:
                    raise ApiError(422, "The search_after cursor is not valid.")
                start = after + 1
            if rendered is not None and not query.on_product and not _filters_values(params):
                return rendered_page(request, query, start, limit, cursor, keep)
            found = _matching_products(catalogue, query, start)
            chunk = [p for _, p in zip(range(limit), found, strict=False)]
            has_more = next(found, None) is not None
            links: Json = {
                "self": _href(request, path, {**keep, **_cursor(cursor), "limit": limit}),
                "first": _href(request, path, {**keep, "limit": limit}),
            }
            if chunk and has_more:
                links["next"] = _href(
                    request, path, {**keep, "search_after": chunk[-1]["uuid"], "limit": limit}
                )
            body = {"_links": links}
        elif pagination == "page":
            page = _int_param(request, "page", 1)
            if page < 1:
                raise ApiError(422, "The page number must be greater than 0.")
            if page * limit > MAX_PAGE_ITEMS:
                raise ApiError(
                    422,
                    "You have reached the maximum number of pages you can retrieve with the "
                    '"page" pagination type. Please use the search after pagination type instead',
                )
            found = _matching_products(catalogue, query, 0)
            for _ in range((page - 1) * limit):
                if next(found, None) is None:
                    break
            chunk = [p for _, p in zip(range(limit), found, strict=False)]
            has_more = next(found, None) is not None
            links = {
                "self": _href(request, path, {**keep, "page": page, "limit": limit}),
                "first": _href(request, path, {**keep, "page": 1, "limit": limit}),
            }
            if page > 1:
                links["previous"] = _href(request, path, {**keep, "page": page - 1, "limit": limit})
            if has_more:
                links["next"] = _href(request, path, {**keep, "page": page + 1, "limit": limit})
            body = {"_links": links, "current_page": page}
            if _truthy(params.get("with_count")):
                body["items_count"] = _count_products(catalogue, query)
        else:
            raise ApiError(422, f'Pagination type "{pagination}" is not supported.')
        body["_embedded"] = {
            "items": [
                {
                    "_links": {"self": _href(request, f"{API}/products-uuid/{p['uuid']}")},
                    **_project(p, request, params, media),
                }
                for p in chunk
            ]
        }
        return JsonResponse(body)

    def render_item(request: Request, product: Json) -> bytes:
        item = {
            "_links": {"self": _href(request, f"{API}/products-uuid/{product['uuid']}")},
            **_project(product, request, {}, media),
        }
        return orjson.dumps(item)

    def rendered_page(
        request: Request,
        query: _ProductQuery,
        start: int,
        limit: int,
        cursor: str | None,
        keep: dict[str, str],
    ) -> Response:
        """A search_after page spliced from pre-rendered items (products as generated)."""
        assert rendered is not None
        indexes: Iterator[int]
        if query.uuids is not None:
            indexes = (n for n in query.uuids if n >= start)
        else:
            indexes = catalogue.iter_product_indexes(start)
        matching = (n for n in indexes if all(test(n) for test in query.on_index))
        chunk = list(itertools.islice(matching, limit))
        has_more = next(matching, None) is not None
        items = []
        for n in chunk:
            if catalogue.pristine(n):
                items.append(zlib.decompress(rendered[n]))
            else:
                product = catalogue.product_at(n)
                if product is not None:
                    items.append(render_item(render_base, product))
        path = request.url.path
        links: Json = {
            "self": _href(request, path, {**keep, **_cursor(cursor), "limit": limit}),
            "first": _href(request, path, {**keep, "limit": limit}),
        }
        if chunk and has_more:
            last = catalogue.product_uuid(chunk[-1])
            links["next"] = _href(request, path, {**keep, "search_after": last, "limit": limit})
        spliced = b",".join(items)
        base = _base(request).encode()
        body = b"".join(
            (
                b'{"_links":',
                orjson.dumps(links),
                b',"_embedded":{"items":[',
                spliced if base == rendered_base else spliced.replace(rendered_base, base),
                b"]}}",
            )
        )
        return Response(body, media_type="application/json")

    render_base: Any = _RenderBase((base_url or _PLACEHOLDER).rstrip("/"))
    rendered_base = render_base.base_url.encode()
    rendered: list[bytes] | None = None
    if prerender:
        # Serving a page then costs a copy, not a generation: the real PIM does this work
        # on its own machines, the sandbox would otherwise do it on the hub's. The `updated`
        # of every product is computed now too (range filters test it for every index).
        for n in range(catalogue.base_count):
            catalogue.effective_updated(n)
        rendered = [
            zlib.compress(render_item(render_base, product), 1)
            for product in map(catalogue.product_at, range(catalogue.base_count))
            if product is not None
        ]
        if len(rendered) != catalogue.base_count:
            rendered = None  # edited before serving: generate as usual

    async def products_list(request: Request) -> Response:
        params = dict(request.query_params)
        return await products_page(request, params.get("search"), params)

    async def products_search(request: Request) -> Response:
        raw = await request.body()
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, "Invalid json message received") from exc
        if not isinstance(body, dict):
            raise ApiError(400, "Invalid json message received")
        params = dict(request.query_params)
        for key in ("scope", "locales", "attributes"):
            if isinstance(body.get(key), str):
                params[key] = body[key]
        return await products_page(request, body.get("search"), params)

    async def product_get(request: Request) -> Response:
        product_uuid = request.path_params["uuid"]
        product = catalogue.get_product(product_uuid)
        if product is None:
            raise ApiError(
                404,
                f'Product "{product_uuid}" does not exist or you do not have permission to '
                "access it.",
            )
        return JsonResponse(_project(product, request, {}, media))

    # ---------------------------------------------------------------- product models
    async def models_list(request: Request) -> Response:
        path = f"{API}/product-models"
        params = dict(request.query_params)
        limit = _limit(request)
        search = _parse_search(params.get("search"))
        now = datetime.now(UTC)
        tests: list[Callable[[str], bool]] = []
        for prop, criteria in search.items():
            for crit in criteria:
                if prop == "updated":
                    ttest = _time_test(prop, crit, now)
                    tests.append(_via(ttest, catalogue.model_updated))
                elif prop == "code":
                    ctest = _list_test(prop, crit)
                    tests.append(ctest)
                else:
                    raise _unsupported(prop, str(crit["operator"]))
        pagination = params.get("pagination_type", "page")
        keep = {k: v for k, v in params.items() if k not in ("page", "search_after", "limit")}
        if pagination == "search_after":
            cursor = params.get("search_after") or None
            codes = (c for c in catalogue.iter_model_codes(cursor) if all(t(c) for t in tests))
            chunk = [c for _, c in zip(range(limit), codes, strict=False)]
            has_more = next(codes, None) is not None
            links: Json = {
                "self": _href(request, path, {**keep, **_cursor(cursor), "limit": limit}),
                "first": _href(request, path, {**keep, "limit": limit}),
            }
            if chunk and has_more:
                links["next"] = _href(
                    request, path, {**keep, "search_after": chunk[-1], "limit": limit}
                )
            body: Json = {"_links": links}
        elif pagination == "page":
            page = _int_param(request, "page", 1)
            if page < 1 or page * limit > MAX_PAGE_ITEMS:
                raise ApiError(422, "The page number is out of the allowed range.")
            codes = (c for c in catalogue.iter_model_codes() if all(t(c) for t in tests))
            for _ in range((page - 1) * limit):
                next(codes, None)
            chunk = [c for _, c in zip(range(limit), codes, strict=False)]
            has_more = next(codes, None) is not None
            links = {
                "self": _href(request, path, {**keep, "page": page, "limit": limit}),
                "first": _href(request, path, {**keep, "page": 1, "limit": limit}),
            }
            if page > 1:
                links["previous"] = _href(request, path, {**keep, "page": page - 1, "limit": limit})
            if has_more:
                links["next"] = _href(request, path, {**keep, "page": page + 1, "limit": limit})
            body = {"_links": links, "current_page": page}
        else:
            raise ApiError(422, f'Pagination type "{pagination}" is not supported.')
        items = []
        for code in chunk:
            model = catalogue.get_product_model(code)
            if model is not None:
                items.append(
                    {
                        "_links": {"self": _href(request, f"{path}/{code}")},
                        **_project(model, request, params, media),
                    }
                )
        body["_embedded"] = {"items": items}
        return JsonResponse(body)

    async def model_get(request: Request) -> Response:
        code = request.path_params["code"]
        model = catalogue.get_product_model(code)
        if model is None:
            raise ApiError(404, f'Product model "{code}" does not exist.')
        return JsonResponse(_project(model, request, {}, media))

    # ---------------------------------------------------------------- media
    async def media_download(request: Request) -> Response:
        code = request.path_params["code"]
        if catalogue.media_owner(code) is None:
            raise ApiError(404, f'Media file "{code}" does not exist.')
        filename = code.rsplit("/", 1)[-1].split("_", 1)[-1]
        return Response(
            _png(code),
            media_type="image/png",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        message = "Resource not found" if status == 404 else "Method not allowed"
        return error_response(status, message if status in (404, 405) else str(exc))

    routes = [
        Route(
            "/api/oauth/v1/token",
            guarded(token, auth=False, faulty=fault.include_token),
            methods=["POST"],
        ),
        Route(f"{API}/products-uuid", guarded(products_list), methods=["GET"]),
        Route(f"{API}/products-uuid/search", guarded(products_search), methods=["POST"]),
        Route(f"{API}/products-uuid/{{uuid}}", guarded(product_get), methods=["GET"]),
        Route(f"{API}/product-models", guarded(models_list), methods=["GET"]),
        Route(f"{API}/product-models/{{code}}", guarded(model_get), methods=["GET"]),
        Route(f"{API}/families/{{family_code}}/variants", guarded(variants_list), methods=["GET"]),
        Route(
            f"{API}/families/{{family_code}}/variants/{{code}}",
            guarded(variant_get),
            methods=["GET"],
        ),
        Route(
            f"{API}/attributes/{{attribute_code}}/options", guarded(options_list), methods=["GET"]
        ),
        Route(
            f"{API}/attributes/{{attribute_code}}/options/{{code}}",
            guarded(option_get),
            methods=["GET"],
        ),
        Route(
            f"{API}/media-files/{{code:path}}/download", guarded(media_download), methods=["GET"]
        ),
        *structure(f"{API}/categories", lambda: catalogue.categories, "Category"),
        *structure(f"{API}/families", lambda: catalogue.families, "Family"),
        *structure(f"{API}/attributes", lambda: catalogue.attributes, "Attribute"),
        *structure(f"{API}/channels", lambda: catalogue.channels, "Channel"),
        *structure(f"{API}/locales", lambda: catalogue.locales, "Locale"),
    ]
    routes += control_routes(catalogue)
    app = Starlette(routes=routes, exception_handlers={HTTPException: not_found})
    app.state.catalogue = catalogue
    app.state.faults = fault
    app.state.tokens = tokens
    app.state.stats = stats
    return app


def _cursor(cursor: str | None) -> dict[str, str]:
    return {"search_after": cursor} if cursor else {}
