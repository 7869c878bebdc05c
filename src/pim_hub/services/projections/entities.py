"""Projects hub.mutations into PostgreSQL: the latest state of every entity and of every value."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import orjson
import psycopg
from psycopg.types.json import Jsonb

from pim_hub.runtime.settings import Settings
from pim_hub.schemas import topics
from pim_hub.schemas.errors import InvalidSnapshot, SchemaError
from pim_hub.schemas.ownership import Ownership
from pim_hub.schemas.versions import parse_version
from pim_hub.services.projections.base import BatchProjector, write_batch

logger = logging.getLogger(__name__)

GROUP = "hub.projector.entities"

#: (attribute, locale, channel) of one value; locale/channel None when not localizable/scopable.
Slot = tuple[str, str | None, str | None]
Verdict = Literal["apply", "stale", "duplicate"]
#: True for a mutation whose version is another source's clock (see source_mutations).
SourcePredicate = Callable[[dict[str, Any]], bool]

IDENTIFIER_TYPE = "pim_catalog_identifier"


@dataclass(frozen=True)
class Stored:
    """What the projection holds about an entity: enough to order the next mutation."""

    mutation_id: str
    version: datetime | None
    mutated_at: datetime


@dataclass(frozen=True)
class ValueRow:
    """One value of an entity as projected."""

    data: Any
    attribute_type: str | None


def _version(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_version(text)
    except InvalidSnapshot:
        return None  # an unparsable version cannot order anything; created_at decides


def source_mutations(ownership: Ownership) -> SourcePredicate | None:
    """True for a mutation that changes only fields a source besides the default owns (a
    producer's patch, HUB_SOURCES): its version is that source's clock, which says nothing
    about the order of Akeneo's versions. None without such sources."""
    if not ownership.active:
        return None

    def foreign(mutation: dict[str, Any]) -> bool:
        names = [
            f"values.{c['attribute']}" if c["field"] == "values" else c["field"]
            for c in mutation.get("changes") or []
        ]
        return bool(names) and all(ownership.owner(n) != ownership.default for n in names)

    return foreign


def classify(mutation: dict[str, Any], stored: Stored | None, foreign: bool = False) -> Verdict:
    """Whether a mutation moves the projection forward.

    Mutations of one entity arrive in order on one partition, but a restart re-reads the last
    batch and a replay re-sends old ones: a mutation already projected is a duplicate, and one
    with an older source version (or, at the same or an unknown version, created earlier)
    than the projected one is stale. A `foreign` mutation (another source's clock, see
    source_mutations) is ordered by when the mutator made it only: the mutator already
    compared it with that source's earlier versions.
    """
    if stored is None:
        return "apply"
    if mutation["mutation_id"] == stored.mutation_id:
        return "duplicate"
    if foreign:
        return "stale" if mutation["created_at"] < stored.mutated_at else "apply"
    version = _version(mutation.get("version"))
    if version is not None and stored.version is not None and version != stored.version:
        return "apply" if version > stored.version else "stale"
    return "stale" if mutation["created_at"] < stored.mutated_at else "apply"


def values_of(entity_type: str, state: dict[str, Any] | None) -> dict[Slot, ValueRow]:
    """The values of a canonical state, keyed by (attribute, locale, channel)."""
    out: dict[Slot, ValueRow] = {}
    raw = (state or {}).get("values")
    if not isinstance(raw, dict):
        return out
    if entity_type == "category":
        # Enriched categories: {"<code|uuid>|channel|locale": {data, type, locale, channel, ...}}
        for key, item in raw.items():
            if isinstance(item, dict) and item.get("data") is not None:
                attribute = item.get("attribute_code") or key
                out[(attribute, item.get("locale"), item.get("channel"))] = ValueRow(
                    item["data"], item.get("type")
                )
        return out
    for attribute, items in raw.items():
        if not isinstance(items, list):
            continue
        for item in items:
            if isinstance(item, dict) and item.get("data") is not None:
                out[(attribute, item.get("locale"), item.get("scope"))] = ValueRow(
                    item["data"], item.get("attribute_type")
                )
    return out


def code_of(entity_type: str, entity_key: str, state: dict[str, Any] | None) -> str | None:
    """The code people search by: the product identifier (SKU) or the entity's code."""
    state = state or {}
    if entity_type == "product":
        identifier = state.get("identifier")
        if isinstance(identifier, str) and identifier:
            return identifier
        for (_, locale, channel), row in values_of(entity_type, state).items():
            if row.attribute_type == IDENTIFIER_TYPE and locale is None and channel is None:
                return str(row.data)
        return None
    code = state.get("code")
    if isinstance(code, str):
        return code
    return entity_key.partition(":")[2] or None


@dataclass
class Batch:
    """The rows one batch of mutations leaves behind, coalesced per entity and slot."""

    entities: dict[str, dict[str, Any]] = field(default_factory=dict)
    values: dict[tuple[str, Slot], dict[str, Any] | None] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str) -> None:
        """Count one outcome."""
        self.counts[kind] = self.counts.get(kind, 0) + 1


def plan_batch(
    mutations: Iterable[dict[str, Any]],
    stored: dict[str, Stored],
    existing: dict[str, set[Slot]],
    foreign: SourcePredicate | None = None,
) -> Batch:
    """Decide the rows a batch of decoded mutations writes (pure; the inputs are updated).

    Args:
        mutations: decoded Mutation records, in log order.
        stored: what the projection holds per entity key (updated as the batch goes).
        existing: value slots present per entity key (updated as the batch goes).
        foreign: which mutations carry another source's version (source_mutations); the
            entity row keeps the version it had (the default source's), their values get
            their own source's version.

    Returns:
        The entity rows and value rows to upsert (a None value row is a delete), and counts.
    """
    batch = Batch()
    for m in mutations:
        key: str = m["entity_key"]
        before = stored.get(key)
        is_foreign = foreign is not None and foreign(m)
        verdict = classify(m, before, is_foreign)
        if verdict != "apply":
            batch.count(verdict)
            continue
        etype: str = m["entity_type"]
        state = orjson.loads(m["state"]) if m.get("state") else None
        version = _version(m.get("version"))
        # Another source's clock must not order the default source's next versions.
        entity_version = (before.version if before else None) if is_foreign else version
        deleted = m["operation"] == "delete"
        batch.entities[key] = {
            "entity_key": key,
            "entity_type": etype,
            "code": code_of(etype, key, state),
            "deleted": deleted,
            "version": entity_version,
            "mutation_id": m["mutation_id"],
            "operation": m["operation"],
            "state": Jsonb(state) if state is not None else None,
            "mutated_at": m["created_at"],
        }
        stored[key] = Stored(m["mutation_id"], entity_version, m["created_at"])
        have = existing.setdefault(key, set())
        wanted = {} if deleted else values_of(etype, state)
        # The values a change names were touched by this mutation; values missing from the
        # rows (a projection that started late) are repaired from the full state.
        touched = {
            (c["attribute"], c["locale"], c["scope"])
            for c in m["changes"]
            if c["field"] == "values" and c["attribute"] is not None
        }
        if m["operation"] == "create":
            touched = set(wanted)
        for slot in (touched & wanted.keys()) | (wanted.keys() - have):
            row = wanted[slot]
            batch.values[(key, slot)] = {
                "entity_key": key,
                "attribute": slot[0],
                "locale": slot[1],
                "channel": slot[2],
                "data": Jsonb(row.data),
                "attribute_type": row.attribute_type,
                "version": version,
                "mutation_id": m["mutation_id"],
            }
        for slot in have - wanted.keys():
            batch.values[(key, slot)] = None
        existing[key] = set(wanted)
        batch.count("deleted" if deleted else m["operation"])
    return batch


UPSERT_ENTITY = """
INSERT INTO entities (entity_key, entity_type, code, deleted, version, mutation_id, operation,
                      state, mutated_at)
VALUES (%(entity_key)s, %(entity_type)s, %(code)s, %(deleted)s, %(version)s, %(mutation_id)s,
        %(operation)s, %(state)s, %(mutated_at)s)
ON CONFLICT (entity_key) DO UPDATE SET
    entity_type = EXCLUDED.entity_type, code = EXCLUDED.code, deleted = EXCLUDED.deleted,
    version = EXCLUDED.version, mutation_id = EXCLUDED.mutation_id,
    operation = EXCLUDED.operation, state = EXCLUDED.state, mutated_at = EXCLUDED.mutated_at,
    projected_at = now()
"""

UPSERT_VALUE = """
INSERT INTO entity_values (entity_key, attribute, locale, channel, data, attribute_type,
                           version, mutation_id)
VALUES (%(entity_key)s, %(attribute)s, %(locale)s, %(channel)s, %(data)s, %(attribute_type)s,
        %(version)s, %(mutation_id)s)
ON CONFLICT ON CONSTRAINT entity_values_slot DO UPDATE SET
    data = EXCLUDED.data, attribute_type = EXCLUDED.attribute_type, version = EXCLUDED.version,
    mutation_id = EXCLUDED.mutation_id, projected_at = now()
"""

DELETE_VALUE = """
DELETE FROM entity_values WHERE entity_key = %s AND attribute = %s
    AND locale IS NOT DISTINCT FROM %s AND channel IS NOT DISTINCT FROM %s
"""


def _write(
    cur: psycopg.Cursor[Any],
    mutations: list[dict[str, Any]],
    foreign: SourcePredicate | None = None,
) -> dict[str, int]:
    keys = sorted({m["entity_key"] for m in mutations})
    # FOR UPDATE: during a rebalance two projectors may briefly hold the same partition.
    cur.execute(
        "SELECT entity_key, mutation_id, version, mutated_at FROM entities"
        " WHERE entity_key = ANY(%s) ORDER BY entity_key FOR UPDATE",
        (keys,),
    )
    stored = {row[0]: Stored(row[1], row[2], row[3]) for row in cur.fetchall()}
    cur.execute(
        "SELECT entity_key, attribute, locale, channel FROM entity_values"
        " WHERE entity_key = ANY(%s)",
        (keys,),
    )
    existing: dict[str, set[Slot]] = {}
    for ekey, attribute, locale, channel in cur.fetchall():
        existing.setdefault(ekey, set()).add((attribute, locale, channel))
    batch = plan_batch(mutations, stored, existing, foreign)
    if batch.entities:
        cur.executemany(UPSERT_ENTITY, list(batch.entities.values()))
    upserts = [row for row in batch.values.values() if row is not None]
    deletes = [(k, *slot) for (k, slot), row in batch.values.items() if row is None]
    if deletes:
        cur.executemany(DELETE_VALUE, deletes)
    if upserts:
        cur.executemany(UPSERT_VALUE, upserts)
    return batch.counts


def project(
    conn: psycopg.Connection[Any],
    mutations: list[dict[str, Any]],
    foreign: SourcePredicate | None = None,
) -> dict[str, int]:
    """Write a batch of decoded mutations in one transaction; return counts per outcome.

    Safe to call again with the same mutations (re-delivery): they come out as duplicates.
    """
    return write_batch(conn, lambda cur, ms: _write(cur, ms, foreign), mutations)


class EntityProjector(BatchProjector[dict[str, int]]):
    """The consumer group hub.projector.entities: keeps the entity tables up to date."""

    topic = topics.MUTATIONS
    schema = "Mutation"
    stage = "projector.entities"
    # Serves /metrics, /healthz and /readyz like every service (its probes need them).
    metrics_service = "entity-projector"
    log = logger
    undecodable_message = "undecodable mutation not projected"

    def __init__(self, settings: Settings, group: str = GROUP) -> None:
        super().__init__(settings, group)
        self.counts: dict[str, int] = {}
        self.foreign = source_mutations(settings.ownership())

    def write(self, cur: psycopg.Cursor[Any], records: list[dict[str, Any]]) -> dict[str, int]:
        """Write a batch of decoded mutations (inside the batch's transaction)."""
        return _write(cur, records, self.foreign)

    def written(self, records: list[dict[str, Any]], result: dict[str, int]) -> None:
        """Add the batch's outcomes to the counts."""
        for kind, n in result.items():
            self._count(kind, n)

    def undecodable(self, topic: str, partition: int, offset: int, exc: SchemaError) -> None:
        """Not ours to repair: the mutation log is the record. Logged and counted."""
        self._count("undecodable")
        super().undecodable(topic, partition, offset, exc)

    def _count(self, kind: str, n: int = 1) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + n


#: Products whose identifier value (SKU) is the parameter, through the attributes whose type
#: is the identifier type: a products-uuid payload carries neither a top-level `identifier`
#: nor `attribute_type` on its values, the attribute snapshots say which attribute it is.
KEYS_BY_IDENTIFIER_SQL = f"""
SELECT v.entity_key FROM entity_values v
JOIN entities a ON a.entity_type = 'attribute' AND NOT a.deleted
    AND a.state ->> 'type' = '{IDENTIFIER_TYPE}' AND a.code = v.attribute
JOIN entities p ON p.entity_key = v.entity_key AND p.entity_type = 'product'
WHERE v.locale IS NULL AND v.channel IS NULL AND v.data = to_jsonb(%s::text)
"""


def keys_by_identifier(conn: psycopg.Connection[Any], identifier: str) -> list[str]:
    """Product keys whose identifier attribute's value is identifier (newest live first)."""
    sql = KEYS_BY_IDENTIFIER_SQL + " ORDER BY p.deleted, p.mutated_at DESC"
    rows = conn.execute(sql, (identifier,)).fetchall()
    return list(dict.fromkeys(row[0] for row in rows))


def fetch_entity(conn: psycopg.Connection[Any], key: str) -> dict[str, Any] | None:
    """One projected entity with its values, by entity key, product identifier/SKU or code.

    Args:
        conn: a connection to the hub database.
        key: "product:<uuid>", "category:shoes", a SKU, or a bare code ("shoes").

    Returns:
        The entity row plus `values` (a list of value rows), or None when nothing matches.
    """
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT * FROM entities WHERE entity_key = %s", (key,))
        row = cur.fetchone()
        if row is None:
            # A SKU first (the common question), then a code of any type if it is unambiguous.
            cur.execute(
                "SELECT * FROM entities WHERE code = %s"
                " ORDER BY (entity_type = 'product') DESC, deleted, mutated_at DESC LIMIT 2",
                (key,),
            )
            rows = cur.fetchall()
            if not rows:
                by_identifier = keys_by_identifier(conn, key)
                if by_identifier:
                    cur.execute("SELECT * FROM entities WHERE entity_key = %s", (by_identifier[0],))
                    rows = cur.fetchall()
            if not rows or (len(rows) > 1 and rows[0]["entity_type"] != "product"):
                return None
            row = rows[0]
        cur.execute(
            "SELECT attribute, locale, channel, data, attribute_type, version, mutation_id"
            " FROM entity_values WHERE entity_key = %s"
            " ORDER BY attribute, locale NULLS FIRST, channel NULLS FIRST",
            (row["entity_key"],),
        )
        row["values"] = cur.fetchall()
    return dict(row)
