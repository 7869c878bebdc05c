"""PostgreSQL access: connections and versioned migrations (yoyo).

The migrations are package data (`pim_hub/runtime/migrations/*.sql`), so an installed wheel
carries them. yoyo is handed the connection parameters as they are, never a URL rebuilt by
hand: passwords with `@`, `/` or `?` and TLS settings (`sslmode`, `sslrootcert`, ...) reach
psycopg unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

logger = logging.getLogger(__name__)

#: The yoyo backend: psycopg 3.
YOYO_SCHEME = "postgresql+psycopg"


@contextmanager
def migrations_dir() -> Iterator[Path]:
    """The directory of the SQL migrations shipped in the package."""
    with as_file(files("pim_hub.runtime") / "migrations") as path:
        yield Path(path)


def migration_ids() -> list[str]:
    """Ids of every shipped migration, in order."""
    with migrations_dir() as path:
        return sorted(p.stem for p in path.glob("*.sql"))


def yoyo_backend(url: str) -> Any:
    """A yoyo backend for the database of a libpq URL or conninfo string, parameters intact."""
    from yoyo.connections import DatabaseURI, get_backend_class
    from yoyo.migrations import default_migration_table

    params: dict[str, Any] = dict(conninfo_to_dict(url))
    dbname = params.pop("dbname", None)
    uri = DatabaseURI(YOYO_SCHEME, None, None, None, None, dbname, params)
    backend = get_backend_class(YOYO_SCHEME)(uri, default_migration_table)
    backend.init_database()
    return backend


def migrate(url: str) -> list[str]:
    """Apply every pending migration; return the ids applied (empty when up to date).

    Raises:
        RuntimeError: the package carries no migrations (a broken install), rather than
            reporting an empty database as up to date.
    """
    from yoyo import read_migrations

    with migrations_dir() as path:
        migrations = read_migrations(str(path))
        if not migrations:
            raise RuntimeError(f"no SQL migrations found in {path}: the installation is broken")
        backend = yoyo_backend(url)
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


def describe_url(url: str) -> str:
    """The database a URL names, for people: host, port, database and user, never the password."""
    params = conninfo_to_dict(url)
    host = params.get("host") or "(default host)"
    port = params.get("port") or "5432"
    user = params.get("user") or "(default user)"
    return f"{params.get('dbname') or '(default database)'} on {host}:{port} as {user}"
