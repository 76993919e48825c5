"""Outbound address policy (SPEC §8): upstream URLs are untrusted input.

Addresses that are loopback, private, link-local, reserved or multicast (cloud metadata
endpoints among them) are refused unless a configured network allows them. Host names are
checked on the *resolved* address, inside the connector's resolver, so every connection
(redirects included) passes the check and DNS rebinding cannot slip past it.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from proxy.errors import BlockedAddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
NAT64 = ipaddress.ip_network("64:ff9b::/96")
VERDICTS_KEPT = 1024  # hosts whose check() verdict is remembered, at most
# Hosts that inet_aton reads as an IPv4 address: 2130706433, 127.1, 0x7f.1, 0177.0.0.1.
NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}\.?$", re.I)


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, NAT64, 6to4, IPv4-compatible)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    low = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in NAT64:
        return low
    # ::a.b.c.d (deprecated IPv4-compatible); :: and ::1 are IPv6's own.
    if int(address) >> 32 == 0 and int(address) > 1:
        return low
    return None


def parse_host(host: str) -> IPAddress | None:
    """The IP address ``host`` denotes (short and numeric IPv4 forms too), else ``None``.

    ``http://2130706433/`` and ``http://127.1/`` reach 127.0.0.1 through the C resolver,
    so they are judged as that address, not as names.
    """
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    if NUMERIC_HOST.match(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host.rstrip(".")))
        except OSError:
            return None
    return None


class AddressPolicy:
    """Decides whether an IP address may be reached."""

    def __init__(self, allowed_networks: Iterable[str] = ()) -> None:
        self.allowed = [ipaddress.ip_network(n, strict=False) for n in allowed_networks]
        # check()'s verdict per host as written in URLs: parsing an IP literal costs ~3 us
        # per request on the event loop, and a server's tiles all name the same host.
        self._verdicts: dict[str, bool] = {}

    def is_allowed(self, address: IPAddress) -> bool:
        """True for public addresses and for addresses inside an allowed network.

        An IPv6 address that embeds an IPv4 one (mapped, NAT64, 6to4, compatible) is
        judged by that IPv4 address, since that is where a translator delivers it.
        """
        if any(address in net for net in self.allowed):
            return True
        if isinstance(address, ipaddress.IPv6Address):
            inner = embedded_ipv4(address)
            if inner is not None:
                return self.is_allowed(inner)
        return address.is_global and not address.is_multicast

    def check(self, host: str) -> None:
        """Raise :class:`BlockedAddress` when ``host`` denotes an IP that is not allowed."""
        allowed = self._verdicts.get(host)
        if allowed is None:
            address = parse_host(host)
            # A name is checked on its resolved addresses, by GuardedResolver.
            allowed = address is None or self.is_allowed(address)
            if len(self._verdicts) >= VERDICTS_KEPT:  # hosts come from untrusted URLs
                self._verdicts.clear()
            self._verdicts[host] = allowed
        if not allowed:
            raise _blocked(host)


class GuardedResolver(AbstractResolver):
    """A resolver that drops every resolved address the policy refuses."""

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve ``host`` and keep only allowed addresses; none left is an error."""
        results = await self.inner.resolve(host, port, family)
        allowed = [r for r in results if self._allowed(r["host"])]
        if not allowed:
            raise _blocked(host)
        return allowed

    def _allowed(self, host: str) -> bool:
        address = parse_host(host)
        return address is not None and self.policy.is_allowed(address)

    async def close(self) -> None:
        """Close the wrapped resolver."""
        await self.inner.close()


def _blocked(host: str) -> BlockedAddress:
    return BlockedAddress(
        f"the upstream address {host!r} is private, loopback or reserved",
        hint="allow its network in the allowed_networks setting if it is trusted",
    )
