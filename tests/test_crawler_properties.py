"""The crawler against generated responses from the hostile server (hypothesis shrinks any
failure to a minimal response): nothing but PageUnavailableError escapes, every fetch ends
within the deadline and a small multiple of the cap, and no connection goes anywhere but the
one allowed loopback host."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from contextlib import aclosing

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from tests.address_oracle import LoopbackOnlySockets
from tests.crawler_costs import DEADLINE, MEMORY_BOUND, SLACK, fetch_costed, hostile_crawler
from tests.hostile_pages import HostileServer, Reply, hostile_server, readable_html, zeros_gzip

pytestmark = pytest.mark.properties


_AFTER_EXTRACTION = ("no readable text on the page", "the page could not be parsed")


@pytest.fixture(scope="module")
def server() -> Iterator[HostileServer]:
    with hostile_server() as running:
        yield running


latin1 = st.text(st.characters(max_codepoint=255), max_size=40)
token = st.sampled_from(["gzip", "x-gzip", "deflate", "br", "zstd", "identity", "compress", ""])
charset = st.one_of(
    st.sampled_from(["utf-8", "base64", "rot13", "idna", "punycode", "utf-16", "hex", "zlib"]),
    latin1,
)
LOCATIONS = [
    "/r0",
    "//127.0.0.1/",
    "http://10.0.0.1/",
    "http://[2002:a9fe:a9fe::]/",
    "http://[64:ff9b::7f00:1]/",
    "http://2130706433/",
    "http://0x7f.1/",
    "http://[::1",
    "http://127.0.0.1:99999/",
    "http://xn--/",
    "gopher://x/",
    "http://u:p@127.0.0.1/",
    "http://[fe80::1%25lo]/",
    "http://mixed.test/",
    "http://public.test./",
    "http://8.8.8.8/",
    "http://[2606:4700::1111]/",
    "",
]
location = st.one_of(st.sampled_from(LOCATIONS), latin1)
header = st.one_of(
    st.builds("Content-Type: text/html; charset={}".format, charset),
    st.sampled_from(["Content-Type: text/html", "Content-Type: text/plain", "Content-Type:"]),
    st.builds(lambda ts: "Content-Encoding: " + ", ".join(ts), st.lists(token, max_size=3)),
    st.builds("Content-Length: {}".format, st.one_of(st.integers(0, 10**7), latin1)),
    st.just("Transfer-Encoding: chunked"),
    st.builds("Location: {}".format, location),
    st.builds("{}: {}".format, latin1, latin1),
)


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data)


def _with_content_type(headers: list[str]) -> list[str]:
    typed = any(h.lower().startswith("content-type:") for h in headers)
    return headers if typed else ["Content-Type: text/html", *headers]


body = st.one_of(
    st.binary(max_size=2000),
    st.just(readable_html()),
    st.just(readable_html()).map(gzip.compress),
    st.just(readable_html()).map(zlib.compress),
    st.just(readable_html()).map(_chunked),
    st.sampled_from([1, 4, 16]).map(lambda mib: zeros_gzip(mib << 20)),
    st.sampled_from([1, 4, 16]).map(lambda mib: gzip.compress(zeros_gzip(mib << 20))),
)
reply = st.builds(
    lambda status, headers, data, pacing, endless: Reply(
        ("\r\n".join([f"HTTP/1.1 {status}", *headers]) + "\r\n\r\n").encode("latin-1"),
        data,
        piece_bytes=pacing[0],
        pause_seconds=pacing[1],
        endless=endless and bool(data),
    ),
    st.one_of(st.sampled_from(["200 OK", "302 Found", "301 x", "404 No", "204 Empty"]), latin1),
    st.lists(header, max_size=6).map(_with_content_type),
    body,
    st.sampled_from([(64 * 1024, 0.0), (1024, 0.0), (7, 0.0), (512, 0.05)]),
    st.booleans(),
)


# The long profile runs thousands of examples: more than pytest's default timeout allows.
@pytest.mark.timeout(3600)
@given(reply=reply)
async def test_no_generated_response_escapes_the_page_failure_or_its_bounds(
    server: HostileServer, reply: Reply
) -> None:
    transport = LoopbackOnlySockets()  # where every connection goes
    async with aclosing(hostile_crawler(transport)) as crawler:
        cost = await fetch_costed(crawler, server.add(reply))

    event("read" if cost.page else cost.reason.split("(")[0][:40])
    assert cost.seconds < DEADLINE + SLACK
    extracted = cost.page is not None or cost.reason.startswith(_AFTER_EXTRACTION)
    if not extracted:
        # Extraction's own allocations (on at most the cap) are not these guards' to bound.
        assert cost.peak_bytes < MEMORY_BOUND, (cost.peak_bytes, cost.reason)
    assert len(transport.hosts) <= 4, "at most max_redirects + 1 hops"
