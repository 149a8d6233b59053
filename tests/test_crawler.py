"""The crawler against real pages on loopback, and the SSRF guard."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack

import pytest

from learning_platform.crawler.fetch import (
    Crawler,
    CrawlPolicy,
    PageUnavailableError,
    UnsafeUrlError,
    system_resolver,
)
from tests.pages_server import serving_pages

FAKE_DNS = {"intranet.example": ["10.1.2.3"], "dual.example": ["93.184.216.34", "fd00::1"]}


async def fake_dns(host: str, port: int) -> list[str]:
    return FAKE_DNS[host] if host in FAKE_DNS else await system_resolver(host, port)


@pytest.fixture(scope="module")
def pages() -> Iterator[str]:
    with serving_pages() as base:
        yield base


@pytest.fixture
async def opened() -> AsyncIterator[AsyncExitStack]:
    """Closes the crawlers (their connection pools) a test made."""
    async with AsyncExitStack() as stack:
        yield stack


def crawler(opened: AsyncExitStack, *allowed: str, max_bytes: int = 200_000) -> Crawler:
    policy = CrawlPolicy(
        allowed_hosts=frozenset(allowed), max_bytes=max_bytes, max_redirects=3, timeout_seconds=5
    )
    made = Crawler(policy, resolver=fake_dns)
    opened.push_async_callback(made.aclose)
    return made


async def test_extracts_the_article_not_the_boilerplate(pages: str, opened: AsyncExitStack) -> None:
    page = await crawler(opened, "127.0.0.1").fetch(f"{pages}/article/1")
    assert page.title.startswith("Forgetting curve")
    assert "memory decays fast without any review" in page.text
    assert "cookie banner" not in page.text and "Login" not in page.text


async def test_follows_a_redirect_chain_within_the_limit(
    pages: str, opened: AsyncExitStack
) -> None:
    page = await crawler(opened, "127.0.0.1").fetch(f"{pages}/redirect/3")
    assert page.url.endswith("/article/0")
    with pytest.raises(PageUnavailableError, match="more than 3 redirects"):
        await crawler(opened, "127.0.0.1").fetch(f"{pages}/redirect/5")


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/huge", "larger than 200,000 bytes"),
        ("/binary", "content type application/octet-stream"),
        ("/missing", "HTTP 404"),
        ("/empty", "no readable text"),
    ],
)
async def test_unreadable_pages_say_why(
    pages: str, opened: AsyncExitStack, path: str, reason: str
) -> None:
    with pytest.raises(PageUnavailableError, match=reason):
        await crawler(opened, "127.0.0.1").fetch(pages + path)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:1/",
        "http://10.0.0.8/admin",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/",
        "http://[::ffff:10.0.0.1]/",
        "http://224.0.0.1/",
        "http://0.0.0.0/",
        "http://intranet.example/",
        "http://dual.example/",
    ],
)
async def test_ssrf_guard_refuses_non_public_addresses(opened: AsyncExitStack, url: str) -> None:
    with pytest.raises(UnsafeUrlError, match="non-public address"):
        await crawler(opened).fetch(url)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "only http and https"),
        ("ftp://example.com/x", "only http and https"),
        ("http://user:pass@example.com/", "credentials"),
    ],
)
async def test_ssrf_guard_refuses_schemes_and_credentials(
    opened: AsyncExitStack, url: str, reason: str
) -> None:
    with pytest.raises(UnsafeUrlError, match=reason):
        await crawler(opened).fetch(url)


async def test_every_redirect_hop_is_checked(pages: str, opened: AsyncExitStack) -> None:
    # `localhost` stands in for a public site: it is allowed, its redirect targets are not.
    start = pages.replace("127.0.0.1", "localhost")
    for target in ("http://10.0.0.1/", "http://169.254.169.254/", f"{pages}/article/0"):
        with pytest.raises(UnsafeUrlError, match="non-public"):
            await crawler(opened, "localhost").fetch(f"{start}/to?url={target}")
    page = await crawler(opened, "localhost").fetch(f"{start}/to?url=/article/2")
    assert "retrieval practice" in page.text
