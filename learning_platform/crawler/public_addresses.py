"""Which IP addresses the crawler may connect to: public unicast only, judged by explicit rules.

Python's `ipaddress.is_global` is not used: on 3.11/3.12 it calls 6to4 (`2002::/16`), NAT64
(`64:ff9b::/96`) and several reserved ranges global, and its tables change between releases.
The rules here follow the IANA special-purpose registries. An IPv6 address that embeds an IPv4
address (IPv4-mapped, NAT64, 6to4, Teredo) is judged by the embedded address, since that is where
the packets end up; IPv4-compatible (`::a.b.c.d`) and -translated (`::ffff:0:a.b.c.d`) addresses
lie outside 2000::/3 and are refused outright: deprecated or host-internal, nothing public uses
them.
"""

from __future__ import annotations

import ipaddress
import socket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

NON_PUBLIC_IPV4 = (
    _V4("0.0.0.0/8"),  # "this network"
    _V4("10.0.0.0/8"),  # private
    _V4("100.64.0.0/10"),  # carrier-grade NAT
    _V4("127.0.0.0/8"),  # loopback
    _V4("169.254.0.0/16"),  # link-local, cloud metadata
    _V4("172.16.0.0/12"),  # private
    _V4("192.0.0.0/24"),  # IETF protocol assignments
    _V4("192.0.2.0/24"),  # documentation
    _V4("192.88.99.0/24"),  # 6to4 relay anycast (deprecated)
    _V4("192.168.0.0/16"),  # private
    _V4("198.18.0.0/15"),  # benchmarking
    _V4("198.51.100.0/24"),  # documentation
    _V4("203.0.113.0/24"),  # documentation
    _V4("224.0.0.0/4"),  # multicast
    _V4("240.0.0.0/4"),  # reserved, broadcast
)

# Only 2000::/3 is allocated as global unicast; inside it these are not public.
GLOBAL_UNICAST_IPV6 = _V6("2000::/3")
NON_PUBLIC_IPV6 = (
    _V6("2001::/23"),  # IETF protocol assignments (Teredo, inside it, is judged apart)
    _V6("2001:db8::/32"),  # documentation
    _V6("3fff::/20"),  # documentation
)

_MAPPED = _V6("::ffff:0:0/96")
_NAT64 = _V6("64:ff9b::/96")
_SIX_TO_FOUR = _V6("2002::/16")
_TEREDO = _V6("2001::/32")


def is_public_address(address: str) -> bool:
    """Whether `address` (an IP address as text, as a resolver returns it) is public unicast.
    Anything that does not parse, or carries an IPv6 zone id, is not."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return is_public_ip(ip)


def is_public_ip(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv4Address):
        return not any(ip in network for network in NON_PUBLIC_IPV4)
    if ip.scope_id is not None:
        return False  # zoned addresses are link-scoped by definition
    embedded = embedded_ipv4(ip)
    if embedded:
        return all(is_public_ip(v4) for v4 in embedded)
    return ip in GLOBAL_UNICAST_IPV6 and not any(ip in network for network in NON_PUBLIC_IPV6)


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses `ip` carries, if it is one of the forms that embed one (for Teredo
    both the server and the client, whose address is stored XOR-ed)."""
    bits = int(ip)
    if ip in _MAPPED or ip in _NAT64:
        return [ipaddress.IPv4Address(bits & 0xFFFF_FFFF)]
    if ip in _SIX_TO_FOUR:
        return [ipaddress.IPv4Address((bits >> 80) & 0xFFFF_FFFF)]
    if ip in _TEREDO:
        server = ipaddress.IPv4Address((bits >> 64) & 0xFFFF_FFFF)
        client = ipaddress.IPv4Address(~bits & 0xFFFF_FFFF)
        return [server, client]
    return []


def ip_literal(host: str) -> IPAddress | None:
    """The address `host` names if it is an IP literal in any notation a resolver accepts:
    dotted quad, IPv6 (zone id included), or the integer, octal, hex and short IPv4 forms that
    inet_aton takes (`2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`). One trailing dot is ignored."""
    host = host.removesuffix(".")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None
