"""Points in time as operators write them: ISO 8601, or an age such as `90m`, `2h`, `7d`.

Shared by the command line (`--since`, `--to-datetime`) and the console's forms.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """ISO 8601 (UTC when no offset) or a relative age like `90m`, `2h`, `7d` before now.

    Raises:
        ValueError: neither form (the message shows both).
    """
    match = _RELATIVE.match(text.strip())
    if match:
        amount, unit = float(match.group(1)), match.group(2)
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: amount})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ValueError(
            f"{text!r}: expected an ISO 8601 time (2026-01-31T10:00:00Z) or an age (90m, 2h, 7d)"
        ) from exc
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
