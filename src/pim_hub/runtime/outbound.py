"""Where the hub may send requests: an address policy for drivers' outgoing connections.

A webhook URL is data anyone with registry access writes; without a policy it reaches cloud
metadata services (169.254.169.254, in any notation: `2852039166`, `[::ffff:169.254.169.254]`,
`metadata.google.internal`) and internal ports. The policy is checked on the URL's text and,
for names, on every address they resolve to when the connection is made (a name that resolves
to a refused address is refused, whatever its text).

HUB_OUTBOUND_ALLOW lists what may be reached besides public addresses: CIDR networks and the
words `loopback` and `private` (RFC 1918, unique local IPv6). Its default,
`loopback,private`, keeps local stacks and in-cluster targets working; production sets it to
the networks its targets live in, or empty. Link-local (cloud metadata), multicast,
unspecified and reserved addresses are refused unless a network of the list names them.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_ALLOW: Final = "loopback,private"
#: Names of metadata services that do not look like addresses.
METADATA_NAMES: Final = frozenset(
    {"metadata.google.internal", "metadata", "metadata.azure.internal", "instance-data"}
)


class RefusedAddress(ValueError):
    """The URL's host, or an address it resolves to, is not allowed by the policy."""


def _address(text: str) -> IPAddress | None:
    """The address a host text denotes, in any notation the OS resolver accepts, or None."""
    host = text.strip("[]")
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        try:
            # inet_aton reads the notations getaddrinfo does: 2852039166, 0xA9FEA9FE, 169.254.43518
            addr = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


@dataclass(frozen=True)
class OutboundPolicy:
    """What outgoing connections may reach besides public addresses."""

    loopback: bool = True
    private: bool = True
    networks: tuple[IPNetwork, ...] = field(default_factory=tuple)

    @classmethod
    def parse(cls, text: str) -> OutboundPolicy:
        """The policy of a HUB_OUTBOUND_ALLOW value (`loopback`, `private`, CIDRs; commas).

        Raises:
            ValueError: an entry is neither a word above nor a network.
        """
        words = [w.strip() for w in text.split(",") if w.strip()]
        networks = []
        for word in words:
            if word in ("loopback", "private"):
                continue
            try:
                networks.append(ipaddress.ip_network(word, strict=False))
            except ValueError as exc:
                raise ValueError(
                    f"HUB_OUTBOUND_ALLOW: {word!r} is not loopback, private or a network"
                ) from exc
        return cls("loopback" in words, "private" in words, tuple(networks))

    def allows(self, addr: IPAddress) -> bool:
        """True when a connection to addr is allowed."""
        if any(addr in net for net in self.networks):
            return True
        if addr.is_loopback:
            return self.loopback
        if addr.is_link_local or addr.is_multicast or addr.is_unspecified or addr.is_reserved:
            return False
        if addr.is_private:
            return self.private
        return addr.is_global

    def check_host(self, host: str) -> None:
        """Refuse a host whose text is a refused address or a metadata name.

        Raises:
            RefusedAddress: with a reason that names the host, not any port state.
        """
        name = host.strip("[]").rstrip(".").lower()
        if name in METADATA_NAMES:
            raise RefusedAddress(f"host {host!r} is a metadata service")
        addr = _address(name)
        if addr is not None and not self.allows(addr):
            raise RefusedAddress(f"address {addr} is not allowed (HUB_OUTBOUND_ALLOW)")

    def check_url(self, url: str) -> None:
        """Refuse a URL whose host is refused (its text; names are checked when resolved).

        Raises:
            RefusedAddress: the host is refused or the URL has none.
        """
        try:
            host = urlsplit(url).hostname
        except ValueError as exc:
            raise RefusedAddress(f"not a URL: {exc}") from exc
        if not host:
            raise RefusedAddress("the URL has no host")
        self.check_host(host)

    def filter_resolved(self, host: str, addresses: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The resolved addresses (aiohttp resolver records) of a host, refused ones out.

        Raises:
            RefusedAddress: none is allowed.
        """
        kept = [a for a in addresses if self.allows(ipaddress.ip_address(a["host"]))]
        if not kept:
            raise RefusedAddress(
                f"host {host!r} resolves to no allowed address (HUB_OUTBOUND_ALLOW)"
            )
        return kept


_policy = OutboundPolicy.parse(DEFAULT_ALLOW)


def configure(allow: str) -> None:
    """Use the policy of a HUB_OUTBOUND_ALLOW value in this process (entry points call it)."""
    global _policy
    _policy = OutboundPolicy.parse(allow)


def policy() -> OutboundPolicy:
    """The policy of this process."""
    return _policy
