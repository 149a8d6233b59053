"""The SSRF guard's address rules, by example and as properties over every embedding."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from yarl import URL

from learning_platform.crawler.fetch import Crawler, CrawlPolicy, PageUnavailableError
from learning_platform.crawler.public_addresses import (
    NON_PUBLIC_IPV4,
    ip_literal,
    is_public_address,
)
from tests.address_oracle import oracle_non_public

# "3.11 says global": Python 3.11's `is_global` calls these global.
ADDRESSES = {
    "8.8.8.8": True,
    "93.184.216.34": True,
    "2606:4700:4700::1111": True,
    "2002:5db8:d822::1": True,  # 6to4 of 93.184.216.34
    "64:ff9b::5db8:d822": True,  # NAT64 of 93.184.216.34
    "2001:0:4136:e378:8000:63bf:a247:27dd": True,  # Teredo: server and client both public
    "127.0.0.1": False,
    "10.1.2.3": False,
    "100.64.0.1": False,
    "169.254.169.254": False,
    "192.0.0.8": False,
    "192.88.99.1": False,  # 3.11 says global
    "198.18.0.1": False,
    "224.0.0.1": False,
    "239.255.255.250": False,
    "240.0.0.1": False,
    "255.255.255.255": False,
    "0.0.0.0": False,
    "::": False,
    "::1": False,
    "::ffff:10.0.0.1": False,
    "::ffff:0:10.0.0.1": False,  # IPv4-translated: 3.11 says global
    "::127.0.0.1": False,  # IPv4-compatible: 3.11 says global
    "::8.8.8.8": False,  # IPv4-compatible is refused whatever it holds
    "2002:7f00:1::": False,  # 6to4 of 127.0.0.1: 3.11 says global
    "2002:a9fe:a9fe::1": False,  # 6to4 of 169.254.169.254: 3.11 says global
    "64:ff9b::7f00:1": False,  # NAT64 of 127.0.0.1: 3.11 says global
    "64:ff9b::a9fe:a9fe": False,  # NAT64 of 169.254.169.254: 3.11 says global
    "64:ff9b:1::1": False,  # local-use NAT64: 3.11 says global
    "2001:0:4136:e378:8000:63bf:f5ff:fffe": False,  # Teredo client 10.0.0.1 (XOR-ed)
    "2001:0:a00:1:8000:63bf:a247:27dd": False,  # Teredo server 10.0.0.1
    "2001:db8::1": False,
    "3fff::1": False,  # 3.11 says global
    "100::1": False,
    "5f00::1": False,  # 3.11 says global
    "fc00::1": False,
    "fd12:3456::1": False,
    "fe80::1": False,
    "fe80::1%eth0": False,
    "2606:4700::1%eth0": False,  # any zone id
    "fec0::1": False,
    "ff02::1": False,
    "not an address": False,
    "": False,
}


@pytest.mark.parametrize(("address", "public"), ADDRESSES.items(), ids=ADDRESSES.keys())
def test_public_addresses(address: str, public: bool) -> None:
    assert is_public_address(address) is public


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("10.0.0.1", "10.0.0.1"),
        ("::ffff:127.0.0.1", "::ffff:7f00:1"),
        ("fe80::1%25eth0", "fe80::1%25eth0"),
        ("example.com", None),
        ("1.2.3.256", None),
        ("127.0.0.1..", None),
    ],
)
def test_ip_literals_in_every_notation_a_resolver_takes(host: str, address: str | None) -> None:
    literal = ip_literal(host)
    assert (str(literal) if literal else None) == address


non_public_ipv4 = st.sampled_from(NON_PUBLIC_IPV4).flatmap(
    lambda net: st.integers(int(net.network_address), int(net.broadcast_address)).map(
        ipaddress.IPv4Address
    )
)
bits = st.integers(min_value=0)


def embeddings(v4: ipaddress.IPv4Address, low: int, mid: int) -> list[str]:
    """Every IPv6 form that carries `v4`, with arbitrary bits where the form has free bits."""
    n = int(v4)
    low &= (1 << 64) - 1
    mid &= (1 << 16) - 1
    teredo = 0x2001_0000 << 96
    return [
        f"::ffff:{v4}",
        f"::ffff:0:{v4}",
        f"::{v4}",
        f"64:ff9b::{v4}",
        str(ipaddress.IPv6Address((0x2002 << 112) | (n << 80) | (mid << 64) | low)),
        # Teredo: v4 as the server, and as the XOR-ed client
        str(ipaddress.IPv6Address(teredo | (n << 64) | (low & ~0xFFFF_FFFF))),
        str(ipaddress.IPv6Address(teredo | (low & 0xFFFF_FFFF) << 32 | (~n & 0xFFFF_FFFF))),
    ]


def integer_forms(v4: ipaddress.IPv4Address) -> list[str]:
    n = int(v4)
    a, b, c, d = v4.packed
    return [
        str(n),
        hex(n),
        f"0{oct(a)[2:]}.{b}.{c}.{d}",
        f"{a}.{(b << 16) | (c << 8) | d}",
        f"{hex(a)}.{hex(b)}.{c}.{d}",
        f"{v4}.",
    ]


@pytest.mark.properties
@given(non_public_ipv4, bits, bits)
def test_no_embedding_of_a_non_public_ipv4_is_public(
    v4: ipaddress.IPv4Address, low: int, mid: int
) -> None:
    for form in embeddings(v4, low, mid):
        assert not is_public_address(form), form


@pytest.mark.properties
@given(non_public_ipv4)
def test_no_integer_octal_or_hex_notation_of_a_non_public_ipv4_is_public(
    v4: ipaddress.IPv4Address,
) -> None:
    for form in integer_forms(v4):
        literal = ip_literal(form)
        assert literal == v4, form
        assert not is_public_address(str(literal))


any_ipv4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
any_ip = st.one_of(
    any_ipv4,
    non_public_ipv4,
    st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address),
    st.tuples(st.one_of(any_ipv4, non_public_ipv4), bits, bits).flatmap(
        lambda t: st.sampled_from(embeddings(*t)).map(ipaddress.IPv6Address)
    ),
)


def host_forms(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> st.SearchStrategy[str]:
    if isinstance(ip, ipaddress.IPv6Address):
        return st.sampled_from([f"[{ip}]", f"[{ip.exploded}]", f"[{ip}%25eth0]"])
    return st.sampled_from([str(ip), *integer_forms(ip)])


@pytest.mark.properties
@pytest.mark.timeout(3600)  # the long profile
@given(
    literal=any_ip.flatmap(host_forms),
    answers=st.lists(any_ip.map(str), max_size=4),
    use_name=st.booleans(),
    scheme=st.sampled_from(["http", "https"]),
)
async def test_the_guard_never_yields_a_non_public_target(
    literal: str, answers: list[str], use_name: bool, scheme: str
) -> None:
    async def resolver(host: str, port: int) -> list[str]:
        return answers

    host = "site.test" if use_name else literal
    # Only the guard is asked; the crawler opens no connection pool for it.
    guard = Crawler(CrawlPolicy(), resolver=resolver)
    try:
        url = URL(f"{scheme}://{host}/path")
    except (ValueError, UnicodeError):
        return  # the crawler reports these as the page's failure (tests/test_crawler_hostile.py)
    try:
        target = await guard.checked_target(url)
    except PageUnavailableError:
        return
    connected = ipaddress.ip_address(target.host)  # always an address, never a name again
    assert not oracle_non_public(connected), (host, answers, target)
