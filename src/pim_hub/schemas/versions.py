"""Source versions: Akeneo's `updated` instants, how they are read and compared."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from pim_hub.schemas.errors import InvalidSnapshot


def parse_version(version: str) -> datetime:
    """Akeneo `updated` (ISO 8601, offset optional, assumed UTC when absent) as an instant.

    Raises:
        InvalidSnapshot: the text is not an ISO 8601 date-time.
    """
    try:
        instant = datetime.fromisoformat(version)
    except (TypeError, ValueError) as exc:
        raise InvalidSnapshot(f"source version {version!r} is not an ISO 8601 date-time") from exc
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return instant


#: How far ahead of the clock a source version may be (HUB_VERSION_MAX_FUTURE_S): one day
#: covers any clock skew and time zone mistake; a version in year 9999 would make every later
#: snapshot of the entity stale, freezing it.
DEFAULT_MAX_FUTURE_S = 24 * 3600


def check_version(
    version: str, now: datetime, max_future_s: float = DEFAULT_MAX_FUTURE_S
) -> datetime:
    """A source version as an instant, refused when it is no date or too far in the future.

    Raises:
        InvalidSnapshot: code `bad_version` (not ISO 8601) or `version_in_future`.
    """
    try:
        instant = parse_version(version)
    except InvalidSnapshot as exc:
        raise InvalidSnapshot(exc.reason, code="bad_version") from exc
    try:
        limit = now + timedelta(seconds=max_future_s)
    except OverflowError:
        return instant  # a limit beyond year 9999 lets everything through
    if instant > limit:
        raise InvalidSnapshot(
            f"source version {version!r} is more than {max_future_s:g} s ahead of the clock "
            f"({now.isoformat()}); it would make every later change of the entity stale "
            "(HUB_VERSION_MAX_FUTURE_S)",
            code="version_in_future",
        )
    return instant


def compare_versions(incoming: str | None, stored: str | None) -> int | None:
    """-1 if incoming is older than stored, 0 same instant, 1 newer, None if either is unknown."""
    if incoming is None or stored is None:
        return None
    a, b = parse_version(incoming), parse_version(stored)
    return -1 if a < b else (1 if a > b else 0)


def delta_version(updated_at: Any) -> str:
    """Turn a delta's `updated_at` ({"date": "2024-05-02 10:11:12.000000", "timezone": "UTC"})
    or an ISO string into ISO 8601 with an offset.

    Only UTC and numeric offsets are understood: resolving zone names would need the tz
    database, which is I/O the core does not do.

    Raises:
        InvalidSnapshot: unparsable date or unsupported zone name.
    """
    if isinstance(updated_at, str):
        text, zone = updated_at, None
    elif isinstance(updated_at, dict) and isinstance(updated_at.get("date"), str):
        text, zone = updated_at["date"], updated_at.get("timezone")
    else:
        raise InvalidSnapshot(f"unsupported delta updated_at {updated_at!r}")
    try:
        instant = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidSnapshot(f"unparsable delta date {text!r}") from exc
    if instant.tzinfo is None:
        if zone in (None, "UTC", "Z", "+00:00", "Etc/UTC"):
            instant = instant.replace(tzinfo=UTC)
        elif isinstance(zone, str) and len(zone) == 6 and zone[0] in "+-" and zone[3] == ":":
            try:
                hours, minutes = int(zone[1:3]), int(zone[4:6])
            except ValueError as exc:
                raise InvalidSnapshot(f"unsupported delta timezone {zone!r}") from exc
            sign = 1 if zone[0] == "+" else -1
            instant = instant.replace(
                tzinfo=timezone(sign * timedelta(hours=hours, minutes=minutes))
            )
        else:
            raise InvalidSnapshot(f"unsupported delta timezone {zone!r}")
    return instant.isoformat()
