"""Figures that are costly to gather (consumer groups, dispatcher coverage, counts over the
whole deliveries projection), kept for a few seconds and refreshed in the background.

Many people polling the overview then cost the broker and the database one collection per
period, and a page is answered from memory: the first request waits for the collection, later
ones get the last figures (with their age) while a refresh runs, the way Prometheus scrapes a
collector rather than every viewer asking the source.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

logger = logging.getLogger(__name__)


class Refreshing(Generic[T]):
    """A value recomputed at most every `max_age_s`, in the background once it exists."""

    def __init__(self, load: Callable[[], T], max_age_s: float, name: str = "figures") -> None:
        self._load = load
        self.max_age_s = max_age_s
        self.name = name
        self._lock = threading.Lock()
        self._first = threading.Lock()  # one synchronous first load at a time
        self._value: T | None = None
        self._at = 0.0
        self._refreshing = False
        self.last_error: str | None = None

    def get(self) -> tuple[T, float]:
        """The value and its age in seconds (0 when just loaded)."""
        with self._lock:
            value, at = self._value, self._at
            stale = value is not None and time.monotonic() - at > self.max_age_s
            if stale and not self._refreshing:
                self._refreshing = True
                threading.Thread(
                    target=self._refresh, name=f"console-{self.name}", daemon=True
                ).start()
        if value is not None:
            return value, time.monotonic() - at
        with self._first:
            with self._lock:
                if self._value is not None:
                    return self._value, time.monotonic() - self._at
            loaded = self._load()  # errors reach the page: there is nothing older to show
            with self._lock:
                self._value, self._at = loaded, time.monotonic()
            return loaded, 0.0

    def invalidate(self) -> None:
        """Forget the value: the next request loads it again (after an action changed it)."""
        with self._lock:
            self._value = None

    def _refresh(self) -> None:
        try:
            loaded = self._load()
        except Exception as exc:  # keep showing the last figures; say why they are old
            logger.warning("console refresh failed", extra={"what": self.name, "error": str(exc)})
            with self._lock:
                self.last_error, self._refreshing = str(exc), False
            return
        with self._lock:
            self._value, self._at = loaded, time.monotonic()
            self._refreshing, self.last_error = False, None
