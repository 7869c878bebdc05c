"""Starts hub services as child processes and stops them all, whatever happens."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


def _die_with_parent() -> None:
    # Linux: the child gets SIGTERM if the parent dies, even by SIGKILL: no orphans.
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


@dataclass
class Service:
    """One child process running a `hub` command."""

    name: str
    args: list[str]
    process: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        """True while the process runs."""
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        """The end of the service's log, for error messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Supervisor:
    """A set of services sharing one environment (broker, database, settings)."""

    env: dict[str, str]
    log_dir: Path
    services: list[Service] = field(default_factory=list)
    #: service name -> the port its /metrics is served on, for services started with one.
    metrics_ports: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop_all)

    def start(self, name: str, *args: str) -> Service:
        """Start `hub <args>` as a child process; its output goes to <log_dir>/<name>.log."""
        log_path = self.log_dir / f"{name}.log"
        log = log_path.open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "pim_hub", *args],
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        log.close()
        svc = Service(name, list(args), proc, log_path)
        self.services.append(svc)
        return svc

    def check(self) -> None:
        """Raise with the log tail if a service has exited."""
        for svc in self.services:
            if not svc.alive():
                raise RuntimeError(
                    f"service {svc.name} exited with {svc.process.returncode}:\n{svc.log_tail()}"
                )

    def stop(self, svc: Service, timeout: float = 15.0, sig: int = signal.SIGTERM) -> int:
        """Stop one service gracefully (SIGTERM), killing it after timeout."""
        if svc.alive():
            svc.process.send_signal(sig)
            try:
                svc.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                svc.process.kill()
                svc.process.wait(timeout=5)
        with contextlib.suppress(ValueError):
            self.services.remove(svc)
        return int(svc.process.returncode)

    def kill(self, svc: Service) -> None:
        """SIGKILL a service (crash tests)."""
        self.stop(svc, timeout=5, sig=signal.SIGKILL)

    def stop_all(self, timeout: float = 15.0) -> None:
        """Stop every service, in parallel."""
        for svc in self.services:
            if svc.alive():
                svc.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for svc in list(self.services):
            try:
                svc.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                svc.process.kill()
                svc.process.wait(timeout=5)
        self.services.clear()
