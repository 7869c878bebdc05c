"""Snapshot → mutation and mutation → jobs, around the pure core; no Faust in here."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from pim_hub.registry.model import IntegrationTarget
from pim_hub.registry.priority import DEFAULT_LEVELS, PriorityRules
from pim_hub.registry.queue_map import QueueMap, queue_map_from_settings
from pim_hub.schemas import ordering, topics
from pim_hub.schemas.entities import entity_key as payload_entity_key
from pim_hub.schemas.errors import DeltaWithoutBase, InvalidSnapshot, PermanentError, SchemaError
from pim_hub.schemas.limits import LimitExceeded, check_code, check_json_text
from pim_hub.schemas.ownership import Ownership, PatchRefused
from pim_hub.schemas.serde import Serde
from pim_hub.schemas.versions import DEFAULT_MAX_FUTURE_S, check_version
from pim_hub.services.mutator.core import diffing
from pim_hub.services.mutator.core.fanout import job_key, plan_jobs, plan_priorities
from pim_hub.services.mutator.core.normalise import CHAIN_KEY
from pim_hub.services.mutator.sources import decide_with_sources

logger = logging.getLogger(__name__)


@dataclass
class Invalid:
    """A snapshot that cannot be processed, with the reason for the invalid topic.

    `code` is the short kind of reason (a metric label, bounded); `reason` the full text.
    """

    reason: str
    key: bytes | None
    value: bytes | None
    entity_type: str = "unknown"
    code: str = "invalid"


@dataclass
class Outcome:
    """What one snapshot came to."""

    entity_key: str
    kind: str  # mutation | noop | stale | duplicate | invalid
    entity_type: str = "unknown"
    mutation: dict[str, Any] | None = None
    new_state: dict[str, Any] | None = None
    invalid: Invalid | None = None


def chain(
    outcome: Outcome, stored_for: Callable[[str], dict[str, Any] | None]
) -> tuple[str, bytes] | None:
    """Keep the entity's mutation chain in its new state; for a mutation, the header naming
    the entity's previous one (None for its first, or for anything else).

    `stored_for` gives the state before this outcome. The new state remembers the last
    mutation (its id and when it was made) so that the next one can name it: fan-out turns
    that into the job its job must not overtake in another lane (pim_hub.schemas.ordering).
    A state without a mutation keeps the link it had.
    """
    new_state = outcome.new_state
    mutation = outcome.mutation
    if new_state is None and mutation is None:
        return None
    previous = stored_for(outcome.entity_key)
    link = previous.get(CHAIN_KEY) if previous is not None else None
    if mutation is None:
        if link is not None and new_state is not None:
            new_state.setdefault(CHAIN_KEY, link)
        return None
    if new_state is not None:
        new_state[CHAIN_KEY] = [mutation["mutation_id"], ordering.epoch_ms(mutation["created_at"])]
    if not isinstance(link, list) or len(link) != 2:
        return None
    return ordering.PREV_MUTATION, ordering.prev_mutation_value(str(link[0]), int(link[1]))


@dataclass
class SnapshotProcessor:
    """Decides what each snapshot means given the stored state of its entity."""

    serde: Serde
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    #: how far ahead of the clock a source version may be (HUB_VERSION_MAX_FUTURE_S)
    max_future_s: float = DEFAULT_MAX_FUTURE_S
    ownership: Ownership = field(default_factory=Ownership)

    def process(
        self,
        key: bytes | None,
        value: bytes | None,
        stored_for: Callable[[str], dict[str, Any] | None],
    ) -> Outcome:
        """Decode one snapshot and decide; never raises for bad input (it becomes Invalid)."""
        try:
            snap = self.serde.decode("Snapshot", value)
        except SchemaError as exc:
            return Outcome(
                "?", "invalid", invalid=Invalid(str(exc), key, value, code="undecodable")
            )
        ekey = snap["entity_key"]
        etype = snap["entity_type"]

        def invalid(reason: str, code: str) -> Outcome:
            return Outcome(ekey, "invalid", etype, invalid=Invalid(reason, key, value, etype, code))

        try:
            return self._decide(snap, stored_for)
        except LimitExceeded as exc:
            return invalid(str(exc), exc.code)
        except InvalidSnapshot as exc:
            return invalid(str(exc), exc.code)
        except PatchRefused as exc:
            return invalid(str(exc), exc.code)
        except DeltaWithoutBase as exc:
            return invalid(str(exc), "delta_without_base")
        except PermanentError as exc:
            return invalid(str(exc), "invalid")
        except orjson.JSONDecodeError as exc:
            return invalid(f"payload is not JSON: {exc}", "bad_json")
        except orjson.JSONEncodeError as exc:
            # What the limits above let through and orjson still cannot write is data, not a
            # bug: set aside rather than stop the stage.
            return invalid(f"payload cannot be serialised: {exc}", "unserialisable")

    def _decide(
        self, snap: dict[str, Any], stored_for: Callable[[str], dict[str, Any] | None]
    ) -> Outcome:
        ekey = snap["entity_key"]
        etype = snap["entity_type"]
        payload = check_snapshot(
            etype,
            ekey,
            snap["source_version"],
            payload_text=snap["payload"],
            now=self.now(),
            max_future_s=self.max_future_s,
        )
        stored = stored_for(ekey)
        # Sources, patches and field ownership: pim_hub.services.mutator.sources.
        decision = decide_with_sources(
            self.ownership, etype, ekey, stored, payload, snap["delta"], snap["source_version"]
        )
        if decision.kind != "mutation":
            return Outcome(ekey, decision.kind, etype, new_state=decision.new_state)
        assert decision.mutation_id is not None and decision.operation is not None
        mutation = {
            "mutation_id": decision.mutation_id,
            "entity_type": etype,
            "entity_key": ekey,
            "operation": decision.operation,
            "changes": [diffing.change_to_record(c) for c in decision.changes],
            "state": orjson.dumps(decision.state_payload).decode()
            if decision.state_payload is not None
            else None,
            "version": snap["source_version"],
            "causation_id": snap["event_id"],
            "correlation_id": snap["correlation_id"] or snap["event_id"],
            "origin": snap["origin"],
            "source_received_at": snap["received_at"],
            "created_at": self.now(),
        }
        return Outcome(ekey, "mutation", etype, mutation=mutation, new_state=decision.new_state)


def key_mismatch(entity_type: str, entity_key: str, payload: Any) -> str | None:
    """Why entity_key is not the key of payload (None when it is); raises InvalidSnapshot
    when the payload has no identity at all."""
    derived = payload_entity_key(entity_type, payload)
    if derived != entity_key:
        return f"entity_key {entity_key!r} does not match the payload ({derived!r})"
    return None


def check_snapshot(
    entity_type: str,
    entity_key: str,
    version: str | None,
    *,
    payload: Any = None,
    payload_text: str | None = None,
    now: datetime,
    max_future_s: float = DEFAULT_MAX_FUTURE_S,
) -> Any:
    """The mutator's checks of a snapshot before it is compared with the stored state.

    Its entity key is a valid code, its payload (read from `payload_text`, within the limits,
    when given so) is of that key, and its version is a date not too far ahead of `now`. Run
    by `SnapshotProcessor` on every snapshot and by `snapshot_problem` for the CLI, so both
    refuse the same snapshots for the same reasons.

    Args:
        version: the snapshot's source version; None: the payload's `updated`, if a string.
        payload: the entity (None: a tombstone), unless `payload_text` is given.
        payload_text: the entity as the snapshot carries it (JSON text; None: a tombstone).

    Returns:
        The payload (parsed from `payload_text` when that was given).

    Raises:
        LimitExceeded: the key or the payload breaks a limit.
        InvalidSnapshot: the payload has no identity or another one (`key_mismatch`), or the
            version is no date or too far ahead (`bad_version`, ...).
        orjson.JSONDecodeError: `payload_text` is not JSON.
    """
    check_code("entity_key", entity_key)
    if payload_text is not None:
        payload = orjson.loads(payload_text)
        check_json_text("payload", payload_text, payload)
    if payload is not None:
        mismatch = key_mismatch(entity_type, entity_key, payload)
        if mismatch is not None:
            raise InvalidSnapshot(mismatch, code="key_mismatch")
    # The version orders every later snapshot of the entity: one that is no date, or far in
    # the future, would make each later one invalid or stale. Refused here, at the door.
    if version is None and isinstance(payload, dict) and isinstance(payload.get("updated"), str):
        version = payload["updated"]
    if version is not None:
        check_version(version, now, max_future_s)
    return payload


def snapshot_problem(
    entity_type: str,
    entity_key: str,
    payload: Any,
    version: str | None,
    max_future_s: float = DEFAULT_MAX_FUTURE_S,
) -> str | None:
    """Why the mutator would set this full snapshot aside (None when it would take it).

    The same checks as SnapshotProcessor.process for a full snapshot or a tombstone
    (`check_snapshot`: identity and version; then the types of every field and value), so
    `hub produce snapshot` and `hub invalid redrive` refuse what the mutator would refuse,
    before it is published.
    """
    try:
        check_snapshot(
            entity_type,
            entity_key,
            version,
            payload=payload,
            now=datetime.now(UTC),
            max_future_s=max_future_s,
        )
        diffing.decide(entity_type, entity_key, None, payload, version)
    except (PermanentError, LimitExceeded) as exc:
        return str(exc)
    return None


@dataclass
class FanOut:
    """Turns a mutation into jobs for the enabled integrations."""

    serde: Serde
    rules: PriorityRules = field(default_factory=PriorityRules)
    levels: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_LEVELS))
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def priorities_for(
        self, mutation: dict[str, Any], integrations: Iterable[IntegrationTarget]
    ) -> list[tuple[str, str]]:
        """(integration id, priority) of each job jobs_for would make, without making them.

        Reads only the mutation's entity_type, operation and (for an update) changes.
        """
        return [
            (integ.integration_id, priority)
            for integ, priority in plan_priorities(
                mutation["entity_type"],
                mutation["operation"],
                mutation["changes"],
                integrations,
                self.rules,
                self.levels,
            )
        ]

    def jobs_for(
        self,
        mutation: dict[str, Any],
        integrations: Iterable[IntegrationTarget],
        mode: str = "live",
    ) -> list[tuple[str, str, dict[str, Any]]]:
        """(priority, kafka key, job record) for each job of one mutation.

        The priority is fan-out's; replays and resyncs move a job to another lane with
        `pim_hub.ops.replay.RunReport.route`.
        """
        planned = plan_jobs(
            mutation["entity_type"],
            mutation["operation"],
            mutation["mutation_id"],
            mutation["changes"],
            integrations,
            self.rules,
            self.levels,
        )
        out = []
        for p in planned:
            priority = p.priority
            job = {
                "job_id": p.job_id,
                "mutation": mutation,
                "integration_id": p.integration_id,
                "driver": p.driver,
                "priority": priority,
                "attempt": 1,
                "mode": mode,
                "not_before": None,
                "last_error": None,
                "created_at": self.now(),
            }
            out.append((priority, job_key(p.integration_id, mutation["entity_key"]), job))
        return out


def invalid_headers(invalid: Invalid) -> list[tuple[str, str | bytes | None]]:
    """Headers that say why a snapshot was set aside."""
    return [
        ("error.type", b"invalid_snapshot"),
        ("error.reason", invalid.code.encode()),
        ("error.message", invalid.reason.encode(errors="backslashreplace")[:4000]),
        ("entity_type", invalid.entity_type.encode(errors="backslashreplace")[:200]),
    ]


def encode_mutation(
    serde: Serde, outcome: Outcome, key: bytes | None, value: bytes | None, budget: int
) -> tuple[Outcome, bytes | None]:
    """The outcome and its encoded mutation, or an invalid outcome when it cannot be written.

    A mutation carries a value twice (its change and the state): a snapshot that fits the
    broker can give a mutation that does not. `budget` is the largest record the stage may
    write (Settings.record_budget), so that fan-out can still wrap the mutation in a job.
    """
    mutation = outcome.mutation
    if mutation is None:
        return outcome, None
    try:
        encoded = serde.encode("Mutation", mutation, topic=topics.MUTATIONS)
    except SchemaError as exc:
        reason, code = f"its mutation cannot be encoded: {exc}", "unencodable"
    else:
        size = len(encoded) + len(outcome.entity_key)
        if size <= budget:
            return outcome, encoded
        reason = (
            f"its {mutation['operation']} mutation is {size} bytes; records above {budget} "
            "bytes cannot be written (HUB_KAFKA__MESSAGE_MAX_BYTES less room for the job "
            "around it)"
        )
        code = "too_large"
    invalid = Invalid(reason, key, value, outcome.entity_type, code)
    return Outcome(outcome.entity_key, "invalid", outcome.entity_type, invalid=invalid), None


def set_aside_record(
    invalid: Invalid, message_max_bytes: int
) -> tuple[bytes | None, bytes | None, list[tuple[str, str | bytes | None]]]:
    """(value, key, headers) of the invalid-topic record for a snapshot set aside.

    The snapshot came from the broker, so it fits; with the headers around it, one at the very
    limit would not, and then it is kept without its value (the headers say why) rather than
    stopping the stage.
    """
    headers = invalid_headers(invalid)
    size = sum(len(k) + len(v or b"") for k, v in headers) + len(invalid.key or b"")
    value = invalid.value
    if value is not None and size + len(value) + 1024 > message_max_bytes:
        headers.append(("error.value_dropped", f"{len(value)} bytes".encode()))
        value = None
    return value, invalid.key, headers


def summarise(outcomes: Sequence[Outcome]) -> dict[str, int]:
    """Counts by outcome kind (for logs and metrics)."""
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.kind] = counts.get(o.kind, 0) + 1
    return counts


def fanout_for(queue_map: QueueMap, serde: Serde) -> FanOut:
    """The FanOut of a queue map: its priority rules and levels."""
    return FanOut(serde, rules=queue_map.rules, levels=dict(queue_map.levels))


def load_fanout(settings: Any, serde: Serde) -> FanOut:
    """The mutator's FanOut built from the configured queue map (HUB_QUEUE_MAP_FILE)."""
    return fanout_for(queue_map_from_settings(settings), serde)
