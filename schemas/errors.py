"""Errors raised by the event schemas and their serde."""


class SchemaError(Exception):
    """A record that cannot be encoded or decoded with the hub's schemas."""

    def __init__(self, message: str, *, topic: str | None = None) -> None:
        super().__init__(message)
        self.topic = topic

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base} (topic {self.topic})" if self.topic else base


class UnknownSchemaVersion(SchemaError):
    """The record names a schema fingerprint or registry id this hub does not know."""
