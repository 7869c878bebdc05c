"""What an Akeneo event means for the hub: validation and a plan (snapshot, fetch, delta, ...)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

from pim_hub.schemas.entities import entity_key
from pim_hub.schemas.errors import InvalidSnapshot, PermanentError
from pim_hub.schemas.limits import has_control
from pim_hub.schemas.versions import delta_version

Json = dict[str, Any]

EVENTS_API: Final = "events-api"
EVENT_PLATFORM: Final = "event-platform"
SourceKind = Literal["events-api", "event-platform"]

#: Kafka headers the receiver puts on pim.raw-events records.
H_SOURCE: Final = "hub-source-kind"
H_RECEIVED: Final = "hub-received-at"
H_EVENT_ID: Final = "hub-event-id"
H_IGNORED: Final = "hub-ignored"

MAX_LEGACY_EVENTS: Final = 10
_EP_PREFIX: Final = "com.akeneo.pim.v1."

Action = Literal["snapshot", "fetch", "delta", "tombstone", "ignore"]


class InvalidEvent(PermanentError, ValueError):
    """An event (or request body) of the wrong shape; the message is the reason given back."""


@dataclass(frozen=True)
class Plan:
    """What to publish for one event.

    Attributes:
        action: snapshot (payload is the full entity), fetch (complete it from REST),
            delta (pass `delta` on), tombstone (deletion), ignore (keep it raw, publish nothing).
        entity_type: the hub entity type (None when ignored).
        entity_key: the Kafka key (None when ignored).
        lookup: what the REST call needs: uuid, code, attribute or family.
        version: the source version of the snapshot (Akeneo `updated` or the event time).
        reason: why it is ignored.
    """

    action: Action
    event_id: str
    entity_type: str | None = None
    entity_key: str | None = None
    payload: Json | None = None
    lookup: dict[str, str] = field(default_factory=dict)
    version: str | None = None
    delta: Json | None = None
    reason: str = ""


def _ignore(event_id: str, reason: str) -> Plan:
    return Plan("ignore", event_id, reason=reason)


def _key(entity_type: str, identity: Json) -> str:
    try:
        return entity_key(entity_type, identity)
    except InvalidSnapshot as exc:
        raise InvalidEvent(str(exc)) from exc


def _obj(parent: Json, name: str, where: str) -> Json:
    value = parent.get(name)
    if not isinstance(value, dict):
        raise InvalidEvent(f"{where}.{name} must be an object")
    return value


def _str(parent: Json, name: str, where: str) -> str:
    value = parent.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidEvent(f"{where}.{name} must be a non-empty string")
    if has_control(value):
        # Ids, types and codes become keys, headers and database rows: NUL is refused by
        # PostgreSQL (the enricher's dedupe), CR/LF/ESC forge logs and terminal output.
        raise InvalidEvent(f"{where}.{name} contains a control character: {value[:80]!r}")
    return value


def clean_resource(entity_type: str, resource: Json) -> Json:
    """An Akeneo resource as the REST API shows it: no HAL links, and products by uuid only.

    Events API products carry a top-level `identifier` next to `uuid`; products-uuid REST
    answers do not (the identifier is a value), so it is dropped to keep both sources equal.
    """
    out = {k: v for k, v in resource.items() if k != "_links"}
    if entity_type == "product" and out.get("uuid") is not None:
        out.pop("identifier", None)
    return out


# ------------------------------------------------------------------------- Events API (legacy)
def check_legacy_body(body: Any) -> list[Json]:
    """The events of an Events API request body, or InvalidEvent with the reason."""
    if not isinstance(body, dict):
        raise InvalidEvent("body must be a JSON object with an 'events' list")
    events = body.get("events")
    if not isinstance(events, list) or not events:
        raise InvalidEvent("'events' must be a non-empty list")
    if len(events) > MAX_LEGACY_EVENTS:
        raise InvalidEvent(f"at most {MAX_LEGACY_EVENTS} events per request")
    for i, event in enumerate(events):
        where = f"events[{i}]"
        if not isinstance(event, dict):
            raise InvalidEvent(f"{where} must be an object")
        _str(event, "event_id", where)
        _str(event, "action", where)
        _obj(event, "data", where)
    return events


_LEGACY_ENTITY = {"product": "product", "product_model": "product_model"}
#: Events API nouns the hub handles (`<noun>.created|updated|removed`).
LEGACY_NOUNS: Final = tuple(_LEGACY_ENTITY)


def plan_legacy(event: Json, own_authors: frozenset[str] = frozenset()) -> Plan:
    """The plan for one Events API item (already checked by check_legacy_body)."""
    where = "event"
    event_id = _str(event, "event_id", where)
    action = _str(event, "action", where)
    # `author` is the connection's user name; anything else (an object, a list) is no author
    # of ours, and must not be hashed (a TypeError answered 500).
    author = event.get("author")
    if isinstance(author, str) and author in own_authors:
        return _ignore(event_id, "own connection")
    noun, _, verb = action.rpartition(".")
    entity_type = _LEGACY_ENTITY.get(noun)
    if entity_type is None or verb not in ("created", "updated", "removed"):
        return _ignore(event_id, f"unsupported event type {action}")
    resource = _obj(_obj(event, "data", where), "resource", f"{where}.data")
    if verb == "removed":
        key = _key(entity_type, resource)
        return Plan(
            "tombstone",
            event_id,
            entity_type,
            key,
            version=_opt_str(event.get("event_datetime")),
        )
    payload = clean_resource(entity_type, resource)
    key = _key(entity_type, payload)
    return Plan(
        "snapshot",
        event_id,
        entity_type,
        key,
        payload=payload,
        version=_opt_str(payload.get("updated")) or _opt_str(event.get("event_datetime")),
    )


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


# ------------------------------------------------------------------------- Event Platform
def check_cloud_event(event: Any, where: str = "event") -> Json:
    """A CloudEvents 1.0 event (structured mode), or InvalidEvent with the reason."""
    if not isinstance(event, dict):
        raise InvalidEvent(f"{where} must be a JSON object (CloudEvents 1.0)")
    if event.get("specversion") != "1.0":
        raise InvalidEvent(f"{where}.specversion must be '1.0'")
    for name in ("id", "type", "source"):
        _str(event, name, where)
    if "data" in event and not isinstance(event["data"], dict):
        raise InvalidEvent(f"{where}.data must be an object")
    return event


def check_event_platform_body(body: Any) -> list[Json]:
    """The CloudEvents of an Event Platform request (one event, or a batch as a JSON array)."""
    if isinstance(body, list):
        if not body:
            raise InvalidEvent("empty batch")
        return [check_cloud_event(e, f"[{i}]") for i, e in enumerate(body)]
    return [check_cloud_event(body)]


#: Event Platform noun -> (hub entity type, name of the object in `data`).
_EP_ENTITIES: Final[dict[str, tuple[str, str]]] = {
    "product": ("product", "product"),
    "product-model": ("product_model", "product_model"),
    "category": ("category", "category"),
    "family": ("family", "family"),
    "family-variant": ("family_variant", "family_variant"),
    "attribute": ("attribute", "attribute"),
    "attribute-option": ("attribute_option", "attribute_option"),
    "channel": ("channel", "channel"),
    "locale": ("locale", "locale"),
}


#: Event Platform nouns the hub handles (`com.akeneo.pim.v1.<noun>.<verb>`).
EP_NOUNS: Final = tuple(_EP_ENTITIES)
EP_PREFIX: Final = _EP_PREFIX


def _code_of(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("code")
    if isinstance(value, str) and value and not has_control(value):
        return value
    return None


def plan_cloud_event(event: Json, own_authors: frozenset[str] = frozenset()) -> Plan:
    """The plan for one Event Platform CloudEvent (already checked by check_cloud_event)."""
    event_id: str = event["id"]
    event_type: str = event["type"]
    data: Json = event.get("data") or {}
    author = data.get("author")
    identifier = author.get("identifier") if isinstance(author, dict) else None
    if isinstance(identifier, str) and identifier in own_authors:
        return _ignore(event_id, "own connection")
    if not event_type.startswith(_EP_PREFIX):
        return _ignore(event_id, f"unsupported event type {event_type}")
    noun, _, verb = event_type[len(_EP_PREFIX) :].partition(".")
    spec = _EP_ENTITIES.get(noun)
    if spec is None or verb not in ("created", "updated", "deleted", "updated.delta"):
        return _ignore(event_id, f"unsupported event type {event_type}")
    entity_type, data_name = spec
    # The product-model reference tables say data.product.code; every example uses
    # data.product_model: accept both.
    obj = data.get(data_name)
    if obj is None and entity_type == "product_model":
        obj = data.get("product")
    if not isinstance(obj, dict):
        raise InvalidEvent(f"data.{data_name} must be an object")
    where = f"data.{data_name}"
    lookup: dict[str, str]
    if entity_type == "product":
        lookup = {"uuid": _str(obj, "uuid", where)}
        identity: Json = {"uuid": lookup["uuid"]}
    elif entity_type == "attribute_option":
        attribute = _code_of(obj.get("attribute"))
        if attribute is None:
            raise InvalidEvent(f"{where}.attribute.code must be a non-empty string")
        lookup = {"code": _str(obj, "code", where), "attribute": attribute}
        identity = dict(lookup)
    else:
        lookup = {"code": _str(obj, "code", where)}
        identity = {"code": lookup["code"]}
        if entity_type == "family_variant":
            family = _code_of(obj.get("family")) or _code_of(obj.get("family_code"))
            if family is None:
                return _ignore(event_id, "family variant event without its family code")
            lookup["family"] = family
    key = _key(entity_type, identity)
    event_time = _opt_str(event.get("time"))
    if verb == "deleted":
        return Plan("tombstone", event_id, entity_type, key, lookup=lookup, version=event_time)
    if verb == "updated.delta":
        changes = obj.get("changes")
        if not isinstance(changes, dict):
            raise InvalidEvent(f"{where}.changes must be an object")
        version = event_time
        if obj.get("updated_at") is not None:
            try:
                version = delta_version(obj["updated_at"])
            except InvalidSnapshot as exc:
                raise InvalidEvent(f"{where}.updated_at: {exc.reason}") from exc
        return Plan(
            "delta", event_id, entity_type, key, lookup=lookup, version=version, delta=changes
        )
    return Plan("fetch", event_id, entity_type, key, lookup=lookup, version=event_time)


def plan_raw(kind: str | None, event: Any, own_authors: frozenset[str] = frozenset()) -> Plan:
    """Plan any raw record: the kind from the receiver's header, else guessed from the JSON.

    Records written straight to pim.raw-events by Akeneo's Kafka destination carry no hub
    headers, only the CloudEvent.
    """
    if kind is None:
        kind = EVENT_PLATFORM if isinstance(event, dict) and "specversion" in event else EVENTS_API
    if kind == EVENT_PLATFORM:
        return plan_cloud_event(check_cloud_event(event), own_authors)
    if not isinstance(event, dict):
        raise InvalidEvent("an Events API event must be a JSON object")
    check_legacy_body({"events": [event]})
    return plan_legacy(event, own_authors)


def event_id_of(kind: str, event: Json) -> str:
    """The deduplication id of an event."""
    return str(event["id"] if kind == EVENT_PLATFORM else event["event_id"])
