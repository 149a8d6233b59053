"""An independent judge of non-public addresses for the SSRF tests, and a socket factory that
lets the crawler's connections reach the loopback test servers only."""

from __future__ import annotations

import errno
import ipaddress
import socket

from aiohttp.connector import AddrInfoType


def oracle_non_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """An independent judge: Python's own flags, and for the forms that embed an IPv4
    address Python's own properties for it (NAT64 spelled out: Python has none)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id is not None:
            return True
        if ip.teredo:
            return any(oracle_non_public(v4) for v4 in ip.teredo)
        nat64 = int(ip) >> 32 == 0x64FF9B << 64
        inner = (
            ip.ipv4_mapped
            or ip.sixtofour
            or (nat64 and ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF))
        )
        if inner:
            return oracle_non_public(inner)
    flags = (
        ip.is_private, ip.is_loopback, ip.is_link_local, ip.is_multicast, ip.is_reserved,
        ip.is_unspecified, not ip.is_global,
    )  # fmt: skip
    return any(flags) or ip in ipaddress.IPv4Network("100.64.0.0/10")


class LoopbackOnlySockets:
    """The crawler's socket factory (aiohttp's `socket_factory`, which opens the socket of every
    connection) for the hostile server: it sees the address each connection really goes to.
    Connections to 127.0.0.1 go through; a public address the guard passed is answered with a
    connection error here (no traffic leaves the machine), and anything else is a test failure:
    the guard let a non-public address through."""

    def __init__(self) -> None:
        self.hosts: list[str] = []

    def __call__(self, addr_info: AddrInfoType) -> socket.socket:
        family, kind, proto, _, address = addr_info
        host = str(address[0])
        self.hosts.append(host)
        if host == "127.0.0.1":
            return socket.socket(family, kind, proto)
        if oracle_non_public(ipaddress.ip_address(host)):
            raise AssertionError(f"the guard let a connection to {host} through")
        raise ConnectionRefusedError(errno.ECONNREFUSED, "tests connect to loopback only")
