"""PostgreSQL access: connections and versioned migrations (yoyo)."""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "infra" / "sql" / "migrations"


def yoyo_url(url: str) -> str:
    """The same database as a yoyo URL using the psycopg 3 backend."""
    params = conninfo_to_dict(url)
    user = params.get("user", "postgres")
    password = f":{params['password']}" if params.get("password") else ""
    host = params.get("host", "127.0.0.1")
    port = params.get("port", "5432")
    dbname = params.get("dbname", "postgres")
    if str(host).startswith("/"):
        return f"postgresql+psycopg://{user}{password}@/{dbname}?host={host}&port={port}"
    return f"postgresql+psycopg://{user}{password}@{host}:{port}/{dbname}"


def migrate(url: str) -> list[str]:
    """Apply every pending migration; return the ids applied (empty when up to date)."""
    from yoyo import get_backend, read_migrations

    backend = get_backend(yoyo_url(url))
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    applied = [m.id for m in pending]
    if applied:
        logger.info("migrations applied", extra={"migrations": applied})
    return applied


def connect(url: str, *, autocommit: bool = True) -> psycopg.Connection[tuple[object, ...]]:
    """A connection with the hub's defaults."""
    return psycopg.connect(url, autocommit=autocommit)


def normalise_url(url: str) -> str:
    """A libpq conninfo string for any accepted URL form."""
    return make_conninfo("", **conninfo_to_dict(url))
