"""Outbound address policy (SPEC §8): upstream URLs are untrusted input.

Addresses that are loopback, private, link-local, reserved or multicast (cloud metadata
endpoints among them) are refused unless a configured network allows them. Host names are
checked on the *resolved* address, inside the connector's resolver, so every connection
(redirects included) passes the check and DNS rebinding cannot slip past it.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from proxy.errors import BlockedAddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressPolicy:
    """Decides whether an IP address may be reached."""

    def __init__(self, allowed_networks: Iterable[str] = ()) -> None:
        self.allowed = [ipaddress.ip_network(n, strict=False) for n in allowed_networks]

    def is_allowed(self, address: IPAddress) -> bool:
        """True for public addresses and for addresses inside an allowed network."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if any(address in net for net in self.allowed):
            return True
        return address.is_global and not address.is_multicast

    def check(self, host: str) -> None:
        """Raise :class:`BlockedAddress` when ``host`` is a literal IP that is not allowed."""
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return  # a name: checked on its resolved addresses by GuardedResolver
        if not self.is_allowed(address):
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
        allowed = [r for r in results if self.policy.is_allowed(ipaddress.ip_address(r["host"]))]
        if not allowed:
            raise _blocked(host)
        return allowed

    async def close(self) -> None:
        """Close the wrapped resolver."""
        await self.inner.close()


def _blocked(host: str) -> BlockedAddress:
    return BlockedAddress(
        f"the upstream address {host!r} is private, loopback or reserved",
        hint="allow its network in the allowed_networks setting if it is trusted",
    )
