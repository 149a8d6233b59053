"""An independent judge of non-public addresses for the SSRF tests, and an httpx transport
that lets connections reach the loopback test servers only."""

from __future__ import annotations

import ipaddress

import httpx


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


class LoopbackOnlyTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport for the hostile server; a public address the guard passed is
    answered with a connection error here (no traffic leaves the machine), and anything else is
    a test failure: the guard let a non-public address through."""

    def __init__(self) -> None:
        super().__init__(verify=False)  # plain http on loopback; no CA bundle to load per example
        self.hosts: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        self.hosts.append(host)
        if host == "127.0.0.1":
            return await super().handle_async_request(request)
        if oracle_non_public(ipaddress.ip_address(host)):
            raise AssertionError(f"the guard let a connection to {request.url} through")
        raise httpx.ConnectError("tests connect to loopback only", request=request)


def loopback_client(transport: LoopbackOnlyTransport, timeout_seconds: float) -> httpx.AsyncClient:
    """A client configured as the crawler's own (build_http_client) on `transport`."""
    return httpx.AsyncClient(
        transport=transport, timeout=timeout_seconds, follow_redirects=False, trust_env=False
    )
