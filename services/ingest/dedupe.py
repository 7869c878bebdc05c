"""A bounded memory of event ids already handled (Akeneo delivers at least once)."""

from __future__ import annotations

from collections import OrderedDict


class SeenIds:
    """Remembers the last `size` event ids; the oldest are forgotten first."""

    def __init__(self, size: int = 200_000) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, event_id: str) -> None:
        """Remember an id (refreshing it if known)."""
        self._ids[event_id] = None
        self._ids.move_to_end(event_id)
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)
