"""`hub health`: the liveness and readiness of hub services, read from their /healthz and /readyz.

Targets are given as `host:port` or URLs of the services' metrics ports, or found through a
Prometheus server (`/api/v1/targets`): every target it scrapes that serves /healthz is asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class ServiceHealth:
    """What one service answered (or why it did not)."""

    target: str
    service: str = ""
    live: bool = False
    ready: bool = False
    #: Each check of /healthz and /readyz: name -> (ok, detail).
    checks: dict[str, tuple[bool, str]] = field(default_factory=dict)
    error: str = ""

    @property
    def ok(self) -> bool:
        """Live and ready."""
        return self.live and self.ready

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "target": self.target,
            "service": self.service,
            "live": self.live,
            "ready": self.ready,
            "checks": {k: {"ok": ok, "detail": d} for k, (ok, d) in self.checks.items()},
            "error": self.error,
        }


def base_url(target: str) -> str:
    """`host:port` or a URL -> the URL /healthz and /readyz hang off."""
    target = target.strip().rstrip("/")
    if "://" not in target:
        target = f"http://{target}"
    for suffix in ("/metrics", "/healthz", "/readyz"):
        target = target.removesuffix(suffix)
    return target


def probe(target: str, client: httpx.Client) -> ServiceHealth:
    """Ask one service; a service that does not answer is neither live nor ready."""
    result = ServiceHealth(target)
    base = base_url(target)
    for path in ("/healthz", "/readyz"):
        try:
            resp = client.get(base + path)
            body = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            result.error = f"{path}: {type(exc).__name__}: {exc}"
            return result
        result.service = str(body.get("service") or result.service)
        for name, check in (body.get("checks") or {}).items():
            result.checks[name] = (bool(check.get("ok")), str(check.get("detail", "")))
        ok = resp.status_code == 200 and body.get("status") == "ok"
        if path == "/healthz":
            result.live = ok
        else:
            result.ready = ok
    return result


def prometheus_targets(prometheus: str, client: httpx.Client, job: str | None = None) -> list[str]:
    """The scrape URLs of the active targets of a Prometheus server (optionally one job)."""
    resp = client.get(base_url(prometheus) + "/api/v1/targets", params={"state": "active"})
    resp.raise_for_status()
    out = []
    for target in resp.json()["data"]["activeTargets"]:
        if job is None or target.get("labels", {}).get("job") == job:
            out.append(str(target["scrapeUrl"]))
    return sorted(set(out))


def check_all(
    targets: list[str], prometheus: str | None = None, job: str | None = None, timeout_s: float = 5
) -> list[ServiceHealth]:
    """Probe every target (and every target of `prometheus`)."""
    with httpx.Client(timeout=timeout_s) as client:
        found = list(targets)
        if prometheus:
            found += prometheus_targets(prometheus, client, job)
        return [probe(t, client) for t in dict.fromkeys(found)]


def render(results: list[ServiceHealth]) -> list[str]:
    """Human-readable lines: one per service, then each failing check with its reason."""
    lines = []
    for r in results:
        state = "ok" if r.ok else ("not ready" if r.live else "NOT LIVE")
        lines.append(f"{state:10} {r.service or '?':32} {r.target}")
        if r.error:
            lines.append(f"           {r.error}")
        for name, (ok, detail) in r.checks.items():
            if not ok:
                lines.append(f"           {name}: {detail}")
    return lines
