"""Per-integration rate limits: parsed from the integration config, enforced by a token bucket."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pim_hub.schemas.errors import PermanentError

#: The integration config key holding the limits, e.g.
#: {"rate_limit": {"requests_per_s": 20, "concurrent": 4, "burst": 20}}.
CONFIG_KEY = "rate_limit"


class InvalidRateLimit(PermanentError, ValueError):
    """The `rate_limit` entry of an integration config is not usable."""


@dataclass(frozen=True)
class RateLimit:
    """Requests per second (None: unlimited), concurrent requests and burst size."""

    requests_per_s: float | None
    concurrent: int
    burst: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any], default_concurrent: int) -> RateLimit:
        """Read `config["rate_limit"]`; absent keys take the defaults.

        Raises:
            InvalidRateLimit: a value is not a positive number or an unknown key is given.
        """
        raw = config.get(CONFIG_KEY) or {}
        if not isinstance(raw, Mapping):
            raise InvalidRateLimit(f"{CONFIG_KEY} must be an object, not {type(raw).__name__}")
        unknown = set(raw) - {"requests_per_s", "concurrent", "burst"}
        if unknown:
            raise InvalidRateLimit(f"{CONFIG_KEY}: unknown keys {', '.join(sorted(unknown))}")
        rps = raw.get("requests_per_s")
        concurrent = raw.get("concurrent", default_concurrent)
        try:
            rate = None if rps is None else float(rps)
            conc = int(concurrent)
            burst = int(raw.get("burst", max(1, round(rate)) if rate else 1))
        except (TypeError, ValueError) as exc:
            raise InvalidRateLimit(f"{CONFIG_KEY}: {exc}") from exc
        if (rate is not None and rate <= 0) or conc < 1 or burst < 1:
            raise InvalidRateLimit(f"{CONFIG_KEY}: values must be positive")
        return cls(rate, conc, burst)


def without_rate_limit(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config the driver validates: the dispatcher's own key removed."""
    return {k: v for k, v in config.items() if k != CONFIG_KEY}


@dataclass
class TokenBucket:
    """Classic token bucket; time is passed in so it stays pure."""

    rate: float | None
    burst: int
    tokens: float = 0.0
    stamp: float | None = None

    def take(self, now: float, n: int = 1) -> float:
        """Take n tokens; returns 0 when allowed now, else seconds to wait (nothing taken)."""
        if self.rate is None:
            return 0.0
        if self.stamp is None:
            self.tokens, self.stamp = float(self.burst), now
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        # A batch bigger than the burst may go once the bucket is full, never more often.
        need = min(float(n), float(self.burst))
        if self.tokens >= need:
            self.tokens -= n
            return 0.0
        return (need - self.tokens) / self.rate
