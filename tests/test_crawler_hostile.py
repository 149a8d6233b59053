"""The crawler against a server written to hurt it: every class ends as the page's failure with
a reason, within the fetch deadline and a small multiple of the size cap in memory."""

from __future__ import annotations

import gzip
import re
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import aclosing

import pytest

from learning_platform.crawler.fetch import Crawler, CrawlPolicy
from tests.address_oracle import LoopbackOnlySockets
from tests.crawler_costs import (
    CAP,
    DEADLINE,
    MEMORY_BOUND,
    SLACK,
    fetch_costed,
    hostile_crawler,
    loopback_dns,
    warm_up,
)
from tests.hostile_pages import (
    HostileServer,
    Reply,
    head,
    hostile_server,
    html_reply,
    readable_html,
    stacked_gzip,
    zeros_gzip,
)

GIB = 1 << 30


@pytest.fixture(scope="module")
def server() -> Iterator[HostileServer]:
    with hostile_server() as running:
        yield running


@pytest.fixture
async def crawler(server: HostileServer) -> AsyncIterator[Crawler]:
    async with aclosing(hostile_crawler(LoopbackOnlySockets())) as made:
        await warm_up(made, server.reserve())
        yield made


def _redirect(location: str) -> Callable[[HostileServer], str]:
    return lambda s: s.add(Reply(head("302 Found", f"Location: {location}", "Content-Length: 0")))


def _self_redirect(s: HostileServer) -> str:
    url = s.reserve()
    s.put(url, Reply(head("302 Found", f"Location: {url}", "Content-Length: 0")))
    return url


def _encoded(body: bytes, encoding: str) -> Callable[[HostileServer], str]:
    return lambda s: s.add(html_reply(body, f"Content-Encoding: {encoding}"))


def _raw(
    head_bytes: bytes,
    body: bytes = b"",
    *,
    piece_bytes: int = 64 * 1024,
    pause_seconds: float = 0.0,
    slow_head: bool = False,
    endless: bool = False,
    pause_after_head: float = 0.0,
) -> Callable[[HostileServer], str]:
    reply = Reply(
        head_bytes, body, piece_bytes, pause_seconds, slow_head, endless, pause_after_head
    )
    return lambda s: s.add(reply)


CLOSE_DELIMITED_GZIP = (
    b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\n\r\n"
)
CHUNK = b"1000\r\n" + b"a" * 0x1000 + b"\r\n"
HOSTILE = {
    # memory: stacked and nested compression (the 2.2 GB page: ~2.5 KB -> 1 GiB)
    "gzip,gzip 1 GiB bomb": (_encoded(stacked_gzip(GIB, 2), "gzip, gzip"), "more than once"),
    "deflate+gzip headers": (
        lambda s: s.add(
            html_reply(stacked_gzip(GIB, 2), "Content-Encoding: deflate", "Content-Encoding: gzip")
        ),
        "more than once",
    ),
    "gzip x3 bomb": (_encoded(stacked_gzip(GIB, 3), "gzip,gzip,gzip"), "more than once"),
    "single gzip 1 GiB bomb, no length": (
        _raw(CLOSE_DELIMITED_GZIP, zeros_gzip(GIB)),
        "larger than 200,000 bytes",
    ),
    "single gzip 64 MiB bomb within the raw cap": (
        _encoded(zeros_gzip(64 << 20), "gzip"),
        "larger than 200,000 bytes",
    ),
    "gzip inside gzip, declared once": (
        _encoded(stacked_gzip(GIB, 2), "gzip"),
        "larger than 200,000 bytes",
    ),
    "raw deflate 256 MiB bomb, no length": (
        _raw(
            b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: deflate\r\n\r\n",
            zeros_gzip(256 << 20)[10:-8],
        ),
        "larger than 200,000 bytes",
    ),
    "gzip bomb, endless and chunked": (
        _raw(
            head("200 OK", "Content-Encoding: gzip", "Transfer-Encoding: chunked"),
            b"%x\r\n%s\r\n" % (64 << 10, zeros_gzip(64 << 20)[: 64 << 10]),
        ),
        "larger than 200,000 bytes",
    ),
    "br": (_encoded(b"\x0b\x02\x80hello\x03", "br"), "encoded as 'br'"),
    "zstd": (_encoded(b"(\xb5/\xfd", "zstd"), "encoded as 'zstd'"),
    "unknown encoding": (_encoded(b"x", "x-evil"), "encoded as 'x-evil'"),
    "corrupt gzip": (_encoded(b"\x1f\x8b\x08\x00garbage" * 10, "gzip"), "corrupt"),
    # time: a byte a second
    "headers a byte a second": (
        _raw(head(), readable_html(), slow_head=True, pause_seconds=0.5),
        f"longer than {DEADLINE:g} s",
    ),
    "body a byte a second": (
        _raw(
            head("200 OK", "Content-Length: 100000"),
            b"<p>" * 40_000,
            piece_bytes=1,
            pause_seconds=0.5,
        ),
        f"longer than {DEADLINE:g} s",
    ),
    # size: bodies that never end
    "close-delimited, endless": (
        _raw(
            b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n",
            b"<p>spam</p>" * 1000,
            endless=True,
        ),
        "larger than 200,000 bytes",
    ),
    "chunked, endless": (
        _raw(head("200 OK", "Transfer-Encoding: chunked"), CHUNK * 16, endless=True),
        "larger than 200,000 bytes",
    ),
    "chunked, size beyond 2**64": (
        _raw(
            head("200 OK", "Transfer-Encoding: chunked"),
            b"F" * 40 + b"\r\n" + b"a" * 1000,
            endless=True,
        ),
        "could not fetch the page",
    ),
    "chunked, bogus size": (
        _raw(head("200 OK", "Transfer-Encoding: chunked"), b"zz\r\nhello\r\n0\r\n\r\n"),
        "could not fetch the page",
    ),
    # aiohttp's C parser dropped the body's stream without an error on this (fetch.py)
    "chunked, bogus size after the head": (
        _raw(
            head("200 OK", "Transfer-Encoding: chunked"),
            b"zz\r\nhello\r\n0\r\n\r\n",
            pause_after_head=0.2,
        ),
        "could not fetch the page",
    ),
    "content-length larger than the body": (
        _raw(head("200 OK", "Content-Length: 5000"), readable_html()[:100]),
        "could not fetch the page",
    ),
    "declared content-length beyond the cap": (
        _raw(head("200 OK", f"Content-Length: {10**30}"), b"x"),
        "could not fetch the page|larger than",
    ),
    # headers
    "one 1 MB header": (_raw(head("200 OK", "X-Big: " + "a" * 1_000_000)), "could not fetch"),
    "50,000 headers": (_raw(head("200 OK", *["X-A: b"] * 50_000)), "could not fetch"),
    "garbage status line": (_raw(b"HELLO THERE\r\n\r\n"), "could not fetch"),
    "status 99999": (_raw(b"HTTP/1.1 99999 Huge\r\n\r\n"), "could not fetch"),
    "nothing at all": (_raw(b""), "could not fetch"),
    # redirects
    "endless redirect to itself": (_self_redirect, "more than 3 redirects"),
    "redirect to 10.0.0.1": (_redirect("http://10.0.0.1/"), "non-public address"),
    "redirect to 6to4 of 127.0.0.1": (_redirect("http://[2002:7f00:1::]/"), "non-public"),
    "redirect to NAT64 of 169.254.169.254": (
        _redirect("http://[64:ff9b::a9fe:a9fe]/latest/meta-data/"),
        "non-public",
    ),
    "redirect to the integer 2130706433": (_redirect("http://2130706433:1/"), "non-public"),
    "redirect to 0x7f.1": (_redirect("http://0x7f.1:1/"), "non-public"),
    "redirect to 127.0.0.2.": (_redirect("http://127.0.0.2./"), "non-public"),
    "redirect to a zone id": (_redirect("http://[fe80::1%25eth0]/"), "non-public|could not"),
    "redirect to gopher:": (_redirect("gopher://127.0.0.1:70/"), "only http and https"),
    "redirect with an unclosed IPv6 bracket": (_redirect("http://[::1"), "could not fetch"),
    "redirect to port 99999": (_redirect("http://127.0.0.1:99999/"), "not a TCP port"),
    "redirect to a bad IDNA label": (_redirect("http://xn--/"), "could not fetch"),
    "redirect to a name with a private address": (_redirect("http://mixed.test/"), "non-public"),
    "redirect to a name with a 6to4 address": (_redirect("http://rebind.test/"), "non-public"),
    "redirect to credentials": (_redirect("http://u:p@127.0.0.1/"), "credentials"),
    # content
    "not html": (lambda s: s.add(Reply(head(content_type="image/png") + b"\x89PNG")), "image/png"),
}


@pytest.mark.parametrize(("build", "reason"), HOSTILE.values(), ids=HOSTILE.keys())
async def test_hostile_page_fails_with_a_reason_in_bounded_time_and_memory(
    server: HostileServer, crawler: Crawler, build: Callable[[HostileServer], str],
    reason: str,
) -> None:  # fmt: skip
    cost = await fetch_costed(crawler, build(server))

    assert cost.error is not None, f"expected a failure, got {cost.page}"
    assert re.search(reason, cost.reason), cost.reason
    assert cost.seconds < DEADLINE + SLACK
    assert cost.peak_bytes < MEMORY_BOUND, f"peak {cost.peak_bytes:,} bytes"


def _gzip_members(html: bytes) -> bytes:
    half = len(html) // 2
    return gzip.compress(html[:half]) + gzip.compress(html[half:])


READABLE = {
    "charset=base64": html_reply(readable_html(), content_type="text/html; charset=base64"),
    "charset=rot13": html_reply(readable_html(), content_type="text/html; charset=rot13"),
    "charset unknown": html_reply(readable_html(), content_type="text/html; charset=x-no-such"),
    "charset=idna": html_reply(readable_html(), content_type="text/html; charset=idna"),
    "quoted charset with a backslash": html_reply(
        readable_html(), content_type='text/html; charset="a\\0b"'
    ),
    "charset=utf-16 with an odd length": html_reply(
        readable_html().decode().encode("utf-16") + b"\xff",
        content_type="text/html; charset=utf-16",
    ),
    "gzip in two members": html_reply(_gzip_members(readable_html()), "Content-Encoding: gzip"),
    "deflate, zlib-wrapped": html_reply(
        zlib.compress(readable_html()), "Content-Encoding: deflate"
    ),
    "deflate, raw": html_reply(
        zlib.compress(readable_html(), wbits=-15), "Content-Encoding: deflate"
    ),
    "identity, gzip": html_reply(
        gzip.compress(readable_html()), "Content-Encoding: identity, gzip"
    ),
    "truncated gzip": html_reply(gzip.compress(readable_html())[:-8], "Content-Encoding: gzip"),
    "HTTP/1.0 close-delimited": Reply(
        b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n" + readable_html()
    ),
}


@pytest.mark.parametrize("reply", READABLE.values(), ids=READABLE.keys())
async def test_odd_but_honest_pages_are_read(
    server: HostileServer, crawler: Crawler, reply: Reply
) -> None:
    cost = await fetch_costed(crawler, server.add(reply))

    assert cost.page is not None, cost.reason
    assert "Spaced repetition lets students remember" in cost.page.text
    assert cost.seconds < DEADLINE + SLACK


async def test_a_punycode_charset_costs_no_more_than_utf8(
    server: HostileServer, crawler: Crawler
) -> None:
    # Python's punycode decoder is quadratic: 200 KB took seconds of CPU no deadline can cut
    # (the decode never yields to the event loop), so only web encodings are honoured.
    body = readable_html() + b"a" * (CAP - 2_000)
    cost = await fetch_costed(
        crawler,
        server.add(html_reply(body, content_type="text/html; charset=punycode")),
    )
    assert cost.page is not None, cost.reason
    assert cost.seconds < 1.0


async def test_extraction_reads_only_the_start_of_a_page_of_countless_paragraphs(
    server: HostileServer,
) -> None:
    # Extraction is superlinear in elements and cannot be cut by the deadline (a thread):
    # 2 MB of short paragraphs would take minutes; its first 100,000 characters take a second.
    paragraphs = b"<html><body><article>" + b"<p>word word word word</p>" * 75_000
    policy = CrawlPolicy(
        allowed_hosts=frozenset({"127.0.0.1"}), max_bytes=len(paragraphs), max_extract_chars=100_000
    )
    made = Crawler(policy, resolver=loopback_dns, socket_factory=LoopbackOnlySockets())
    async with aclosing(made) as crawler:
        started = time.monotonic()
        page = await crawler.fetch(server.add(html_reply(paragraphs)))
    assert 50_000 < len(page.text) < 100_000
    assert time.monotonic() - started < 10
