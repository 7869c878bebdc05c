"""A limit on failed sign-ins: per client address and per user name, over a sliding window.

Each key keeps the times of its failed attempts within the window (a sliding log: exact, and
small, since the limits are a handful of attempts). A key at its limit is refused until its
oldest failure leaves the window; that wait is the 429's Retry-After. The counts live in the
console process: each replica keeps its own (documented in docs/console.md), which bounds a
guesser at limit x replicas per window, still far below what a password guess needs.

The number of keys is bounded (`max_keys`): a flood of made-up names or addresses evicts the
stalest keys instead of growing memory without end.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable


class SlidingWindow:
    """At most `limit` events per key within `window_s` seconds."""

    def __init__(
        self,
        limit: int,
        window_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("a sliding window needs a limit >= 1 and a window > 0")
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._max_keys = max_keys
        self._events: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _current(self, key: str, now: float) -> deque[float] | None:
        events = self._events.get(key)
        if events is None:
            return None
        while events and events[0] <= now - self.window_s:
            events.popleft()
        if not events:
            del self._events[key]
            return None
        return events

    def retry_after(self, key: str) -> float:
        """Seconds until `key` may try again (0: now)."""
        now = self._clock()
        with self._lock:
            events = self._current(key, now)
            if events is None or len(events) < self.limit:
                return 0.0
            return max(0.0, events[len(events) - self.limit] + self.window_s - now)

    def hit(self, key: str) -> None:
        """One more event of `key` (a failed attempt)."""
        now = self._clock()
        with self._lock:
            events = self._current(key, now)
            if events is None:
                events = self._events[key] = deque(maxlen=self.limit)
            events.append(now)
            self._events.move_to_end(key)
            while len(self._events) > self._max_keys:
                self._events.popitem(last=False)  # the key that failed longest ago

    def clear(self, key: str) -> None:
        """Forget `key` (a successful sign-in of that user name)."""
        with self._lock:
            self._events.pop(key, None)


class SignInLimiter:
    """Failed sign-ins, limited per client address and per user name."""

    def __init__(
        self,
        per_address: int,
        per_user: int,
        window_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.addresses = SlidingWindow(per_address, window_s, clock=clock)
        self.users = SlidingWindow(per_user, window_s, clock=clock)

    def retry_after(self, address: str, user: str) -> int:
        """Whole seconds to wait before this address may try this user again (0: go ahead)."""
        wait = max(self.addresses.retry_after(address), self.users.retry_after(_user_key(user)))
        return math.ceil(wait) if wait > 0 else 0

    def failed(self, address: str, user: str) -> None:
        """A sign-in from `address` as `user` failed."""
        self.addresses.hit(address)
        self.users.hit(_user_key(user))

    def succeeded(self, user: str) -> None:
        """The user signed in: their name's failures are forgiven (the address's are not, so a
        guesser holding one account cannot reset its budget for the others)."""
        self.users.clear(_user_key(user))


def _user_key(user: str) -> str:
    # Names are compared exactly at sign-in; only the length is bounded here.
    return user[:200]
