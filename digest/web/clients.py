"""Who is asking: the client's network, read through the reverse proxies the operator trusts.

Rate limits count per network: an IPv4 address, or an IPv6 /64 (one household or server gets a
whole /64, so counting single IPv6 addresses would give it endless buckets). X-Forwarded-For is
believed only from `[web] trusted_proxies`; an address nobody can parse is never a bucket.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from starlette.requests import Request

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPV6_PREFIX = 64


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Networks from "10.0.0.1" or "10.0.0.0/8" strings (ValueError names a bad one)."""
    return tuple(ipaddress.ip_network(value.strip(), strict=False) for value in values)


def parse_address(value: str) -> IPAddress | None:
    """An IP address from a socket peer or a forwarded hop ("[::1]:443", "1.2.3.4:80" too)."""
    text = value.strip()
    if text.startswith("["):  # [v6]:port
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_address(request: Request, trusted: Sequence[IPNetwork]) -> IPAddress | None:
    """The address of whoever sent the request, or None when it cannot be known.

    The peer's own address, unless the peer is a trusted proxy: then X-Forwarded-For is read
    from the right, skipping trusted proxies, and the first other hop is the client.
    """
    peer = parse_address(request.client.host) if request.client else None
    if peer is None or not _within(peer, trusted):
        return peer
    hops = [hop for line in request.headers.getlist("x-forwarded-for") for hop in line.split(",")]
    if not hops:
        return None  # a trusted proxy that names no client: its own address is everyone's
    address: IPAddress | None = None
    for hop in reversed(hops):
        address = parse_address(hop)
        if address is None or not _within(address, trusted):
            return address
    return address  # every hop is one of ours: the request came from inside


def network_of(address: IPAddress | None) -> str | None:
    """The rate-limit bucket name of an address: the IPv4 address, or the IPv6 /64."""
    if address is None:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)


def _within(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in networks)
