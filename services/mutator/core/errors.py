"""Errors raised by the pure mutator core (all permanent: retrying the same input cannot help)."""

from __future__ import annotations


class HubCoreError(Exception):
    """Root of every error the mutator core raises."""


class PermanentError(HubCoreError):
    """The input itself is wrong; the shell routes it aside instead of retrying."""


class InvalidSnapshot(PermanentError):
    """A snapshot (or delta) that cannot be turned into a canonical entity state.

    Attributes:
        reason: human-readable explanation, suitable for a Kafka header.
        entity_type: the entity type the snapshot claimed, when known.
    """

    def __init__(self, reason: str, *, entity_type: str | None = None) -> None:
        self.reason = reason
        self.entity_type = entity_type
        super().__init__(reason)

    def __str__(self) -> str:
        if self.entity_type:
            return f"invalid {self.entity_type} snapshot: {self.reason}"
        return f"invalid snapshot: {self.reason}"


class DeltaWithoutBase(PermanentError):
    """A `*.updated.delta` event arrived for an entity with no stored state to apply it to.

    The shell should fetch a full snapshot (REST) instead; the delta alone cannot rebuild the entity.
    """

    def __init__(self, entity_key: str) -> None:
        self.entity_key = entity_key
        super().__init__(entity_key)

    def __str__(self) -> str:
        return f"delta for {self.entity_key} but no stored state to apply it to"
