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
