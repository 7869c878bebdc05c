"""Offset tracking of one partition: commit only below the oldest record still in flight."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PartitionOffsets:
    """Records taken from one partition, which of them are finished, and their encoded bytes."""

    pending: dict[int, bool] = field(default_factory=dict)  # offset -> done
    next_offset: int | None = None  # the offset after the last record taken
    committed: int | None = None
    open: int = 0  # records taken and not finished (asked for on every poll: kept, not counted)
    open_bytes: int = 0  # their encoded size (what the buffer's memory follows)
    sizes: dict[int, int] = field(default_factory=dict)  # offset -> encoded size, while open

    def take(self, offset: int, size: int = 0) -> None:
        """A record (of `size` encoded bytes) was handed to the workers."""
        if self.pending.get(offset) is not False:
            self.open += 1
        self.pending[offset] = False
        self.open_bytes += size - self.sizes.get(offset, 0)
        if size:
            self.sizes[offset] = size
        self.next_offset = offset + 1

    def skip(self, offset: int) -> None:
        """A record needing no work (another group's job): finished at once."""
        self.take(offset)
        self.done(offset)

    def rewind(self, offset: int) -> None:
        """The partition will be read again from offset (a retry that is not due yet)."""
        self.next_offset = offset

    def done(self, offset: int) -> None:
        """The record's outputs are acknowledged."""
        if self.pending.get(offset) is False:
            self.pending[offset] = True
            self.open -= 1
            self.open_bytes -= self.sizes.pop(offset, 0)

    def in_flight(self) -> int:
        """Records taken and not finished."""
        return self.open

    def commit_point(self) -> int | None:
        """The offset to commit (first unfinished record), or None if nothing new."""
        point = self.next_offset
        for off in sorted(self.pending):
            if not self.pending[off]:
                point = off
                break
        # Forget the finished prefix.
        for off in [o for o in self.pending if point is None or o < point]:
            del self.pending[off]
        if point is None or point == self.committed:
            return None
        return point

    def committed_at(self, offset: int) -> None:
        """The broker stored offset for this partition."""
        self.committed = offset
