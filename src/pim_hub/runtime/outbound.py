"""Where the hub may send requests: an address policy for drivers' outgoing connections.

A webhook URL is data anyone with registry access writes; without a policy it reaches cloud
metadata services (169.254.169.254, in any notation: `2852039166`, `[::ffff:169.254.169.254]`,
`metadata.google.internal`) and internal ports. The policy is checked on the URL's text and,
for names, on every address they resolve to when the connection is made (a name that resolves
to a refused address is refused, whatever its text).

HUB_OUTBOUND_ALLOW lists what may be reached besides public addresses: CIDR networks and the
words `loopback` and `private` (RFC 1918, unique local IPv6). Its default is empty: only
public addresses. Targets on this machine or inside the cluster are opened on purpose, with
the narrowest entry that fits (`loopback` for a local stack, the cluster's pod or service
CIDR, or `private`); the local stack (`hub up`, `hub demo`) sets LOCAL_ALLOW. Link-local
(cloud metadata), multicast, unspecified and reserved addresses are refused unless a network
of the list names them.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Only public addresses: loopback, private, link-local and metadata ranges are refused.
DEFAULT_ALLOW: Final = ""
#: What the local stack opens: its sandboxes and receivers listen on this machine.
LOCAL_ALLOW: Final = "loopback,private"
#: Where a refusal message sends the operator.
_HOW_TO_ALLOW: Final = (
    "refused by the outgoing URL policy; if this target is yours, allow it with "
    "HUB_OUTBOUND_ALLOW (`loopback`, `private` or its network, e.g. 10.0.0.0/8)"
)
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

    loopback: bool = False
    private: bool = False
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
            raise RefusedAddress(
                f"host {host!r} is a cloud metadata service, {_HOW_TO_ALLOW.split(';')[0]}"
            )
        addr = _address(name)
        if addr is not None and not self.allows(addr):
            raise RefusedAddress(f"address {addr} ({kind(addr)}) is {_HOW_TO_ALLOW}")

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
        resolved = [ipaddress.ip_address(a["host"]) for a in addresses]
        kept = [a for a, addr in zip(addresses, resolved, strict=True) if self.allows(addr)]
        if not kept:
            kinds = ", ".join(sorted({kind(addr) for addr in resolved})) or "no address"
            raise RefusedAddress(f"host {host!r} resolves to {kinds} addresses, {_HOW_TO_ALLOW}")
        return kept


def kind(addr: IPAddress) -> str:
    """The range an address belongs to, in the words of a refusal message."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr.is_loopback:
        return "loopback"
    if addr.is_link_local:
        return "link-local, cloud metadata"
    if addr.is_multicast:
        return "multicast"
    if addr.is_unspecified:
        return "unspecified"
    if addr.is_reserved:
        return "reserved"
    if addr.is_private:
        return "private"
    return "public" if addr.is_global else "non-public"


_policy = OutboundPolicy.parse(DEFAULT_ALLOW)


def configure(allow: str) -> None:
    """Use the policy of a HUB_OUTBOUND_ALLOW value in this process (entry points call it)."""
    global _policy
    _policy = OutboundPolicy.parse(allow)


def policy() -> OutboundPolicy:
    """The policy of this process."""
    return _policy
