"""The hub's one error hierarchy.

Every error the hub raises on purpose derives from `HubError`, and is either *retryable*
(the same input may succeed later: a target or dependency is unavailable) or *permanent*
(the input itself is wrong; retrying cannot help, so it is recorded with its reason and the
stage moves on). Stages decide what to do with an error by this split alone.
"""

from __future__ import annotations


class HubError(Exception):
    """Root of every error the hub raises on purpose."""

    #: Whether trying the same input again may succeed.
    retryable: bool = False


class RetryableError(HubError):
    """A dependency or target is unavailable; the same input may succeed later."""

    retryable = True


class PermanentError(HubError):
    """The input itself is wrong; it is set aside with its reason instead of retried."""


class SchemaError(PermanentError):
    """A record that cannot be encoded or decoded with the hub's schemas."""

    def __init__(self, message: str, *, topic: str | None = None) -> None:
        super().__init__(message)
        self.topic = topic

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base} (topic {self.topic})" if self.topic else base


class UnknownSchemaVersion(SchemaError):
    """The record names a schema fingerprint or registry id this hub does not know."""


class InvalidSnapshot(PermanentError):
    """A snapshot (or delta) that cannot be turned into a canonical entity state.

    Attributes:
        reason: human-readable explanation, suitable for a Kafka header.
        entity_type: the entity type the snapshot claimed, when known.
        code: a short, bounded kind of reason (`invalid`, `too_deep`, `bad_version`...), fit
            for a metric label.
    """

    def __init__(
        self, reason: str, *, entity_type: str | None = None, code: str = "invalid"
    ) -> None:
        self.reason = reason
        self.entity_type = entity_type
        self.code = code
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
