"""Limits every stage agrees on: JSON nesting, value size, control characters, record size.

What the receiver, the enricher and the mutator accept must always be writable by every later
stage. Those stages re-serialise entity JSON with orjson, which parses 1,024 levels of nesting
but writes only 254 (`TypeError: Recursion limit reached`), wrap it a few levels deeper (job and
webhook bodies), and write it to PostgreSQL, whose text and jsonb columns refuse NUL. The
broker refuses a record above its `message.max.bytes`. So the doors refuse what breaks these
limits, with a reason, and the stages set aside what still gets past them.
"""

from __future__ import annotations

import re
from typing import Any, Final

#: Deepest JSON nesting accepted anywhere (an Akeneo product is about 8 deep; orjson writes
#: 254): room for every wrapper a later stage adds.
MAX_JSON_DEPTH: Final = 64
#: Longest JSON text of one field-level value (one attribute x locale x scope, a label...), in
#: characters. Akeneo's text areas hold 65,535; a mutation carries a value twice (its change
#: and the state), so this keeps one value well inside a record.
MAX_VALUE_CHARS: Final = 256 * 1024
#: The broker's default `message.max.bytes` (librdkafka's producer default too).
DEFAULT_MESSAGE_MAX_BYTES: Final = 1_000_000
#: Room kept below the message limit for what a later stage wraps around a record (a job
#: around its mutation, its last error, headers, the record's own framing).
RECORD_HEADROOM_BYTES: Final = 64 * 1024

# C0 controls and DEL: never part of a code, key or id; CR/LF/ESC in one would also forge
# log lines and terminal output, NUL is refused by PostgreSQL text.
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


class LimitExceeded(ValueError):
    """A value breaks one of the limits; `code` is a short, bounded reason (a metric label)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def has_control(text: str) -> bool:
    """True when text holds a control character (C0 or DEL)."""
    return _CONTROL.search(text) is not None


def check_code(what: str, text: str) -> None:
    """Refuse a key, id or code with a control character (NUL included).

    Raises:
        LimitExceeded: code `control_character`.
    """
    found = _CONTROL.search(text)
    if found is not None:
        raise LimitExceeded(
            "control_character",
            f"{what} {text[:80]!r} contains a control character ({found.group()!r})",
        )


def escape_controls(text: str) -> str:
    """text with each control character shown as an escape (`\\x00`, `\\n`, `\\x1b`).

    For untrusted text on a terminal, in a database row or a log line: a key with CR, LF
    or ESC must not rewrite what is shown around it, NUL must not be refused by PostgreSQL.
    """
    if _CONTROL.search(text) is None:
        return text
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def json_depth_exceeds(value: Any, max_depth: int = MAX_JSON_DEPTH) -> bool:
    """True when a decoded JSON value nests deeper than max_depth containers.

    Iterative (a value nested 1,000 deep must not exhaust Python's stack either) and it visits
    containers only: scalars cost one type check.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        if type(node) is dict:
            children = node.values()
        elif type(node) is list:
            children = node  # type: ignore[assignment]
        else:
            continue
        if depth > max_depth:
            return True
        for child in children:
            if type(child) is dict or type(child) is list:
                push((child, depth + 1))
    return False


def check_depth(what: str, value: Any, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse JSON nested deeper than max_depth.

    Raises:
        LimitExceeded: code `too_deep`.
    """
    if json_depth_exceeds(value, max_depth):
        raise LimitExceeded("too_deep", f"{what} is nested deeper than {max_depth} levels")


def has_nul(value: Any) -> bool:
    """True when a decoded JSON value holds NUL in a string or an object key."""
    stack = [value]
    while stack:
        node = stack.pop()
        if type(node) is str:
            if "\x00" in node:
                return True
        elif type(node) is dict:
            for k, v in node.items():
                if "\x00" in k:
                    return True
                stack.append(v)
        elif type(node) is list:
            stack.extend(node)
    return False


def check_json_text(what: str, text: str | None, value: Any) -> None:
    """Refuse JSON whose text (as received) and decoded value break a limit: depth or NUL.

    NUL can only appear in JSON text as the escape `\\u0000`: the value is searched only
    when the text holds one, so clean JSON costs one substring search.

    Raises:
        LimitExceeded: codes `too_deep`, `control_character`.
    """
    check_depth(what, value)
    if (text is None or "\\u0000" in text) and has_nul(value):
        raise LimitExceeded("control_character", f"{what} contains a NUL character")


def record_budget(message_max_bytes: int) -> int:
    """Largest record (key, value and headers) a stage may write so that the next can wrap it."""
    return max(message_max_bytes - RECORD_HEADROOM_BYTES, message_max_bytes // 2)
