"""The replay/resync form: parsed and checked the way `hub replay` and `hub resync` check
their flags, so bad input is a clear message on the page, never a failed run.
"""

from __future__ import annotations

from collections.abc import Set
from typing import Any

from starlette.datastructures import FormData

from pim_hub.ops.replay import EntityFilter
from pim_hub.ops.when import parse_when


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def parse_run_form(form: FormData, entity_types: Set[str]) -> tuple[str, dict[str, Any]]:
    """("replay" | "resync", fields) from the form.

    Raises:
        ValueError: a field is missing or wrong (the message names it).
    """
    kind = _text(form, "kind") or "replay"
    if kind not in ("replay", "resync"):
        raise ValueError(f"unknown kind {kind!r}: replay or resync")
    types = [t for t in (str(v) for v in form.getlist("entity_type")) if t]
    unknown = sorted(set(types) - set(entity_types))
    if unknown:
        raise ValueError(f"unknown entity type(s) {', '.join(unknown)}")
    key = _text(form, "key") or None
    try:
        rate = float(_text(form, "rate") or 0)
    except ValueError as exc:
        raise ValueError("rate must be a number of jobs per second") from exc
    if rate < 0:
        raise ValueError("rate must not be negative")
    flt = EntityFilter(frozenset(types) if types else None, key)
    integrations = [i for i in (str(v) for v in form.getlist("integration")) if i]
    fields: dict[str, Any] = {"entity_types": types, "key": key, "rate": rate, "filter": flt}
    if kind == "resync":
        if len(integrations) != 1:
            raise ValueError("a resync fills one integration: choose exactly one")
        fields.update(integration=integrations[0], target=integrations[0])
        return kind, fields
    mode = _text(form, "mode") or "guarded"
    if mode not in ("guarded", "force"):
        raise ValueError(f"mode {mode!r}: guarded or force")
    since_text, until_text = _text(form, "since"), _text(form, "until")
    if not since_text:
        raise ValueError("say from when to replay (an age such as 2h, or an ISO 8601 time)")
    since = parse_when(since_text)
    until = parse_when(until_text) if until_text else None
    if until is not None and until <= since:
        raise ValueError("until must be after since")
    fields.update(
        integrations=integrations,
        mode=mode,
        since=since,
        until=until,
        target=", ".join(integrations) or "every enabled integration",
    )
    return kind, fields
