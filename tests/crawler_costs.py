"""What one fetch costs: wall time and peak Python memory (tracemalloc), and its outcome."""

from __future__ import annotations

import contextlib
import time
import tracemalloc
from dataclasses import dataclass

from learning_platform.crawler.fetch import Crawler, CrawlPolicy, Page, PageUnavailableError
from tests.address_oracle import LoopbackOnlySockets

CAP = 200_000
DEADLINE = 2.0
# Room for a loaded machine on top of the deadline; far below the old unbounded minutes.
SLACK = 1.5
# The body (cap) plus one network chunk and one decoded piece, and the server's buffers.
MEMORY_BOUND = 4 * CAP


# Names the tests resolve, and to what; no query ever leaves the machine.
TEST_DNS = {
    "public.test": ["93.184.216.34"],
    "mixed.test": ["93.184.216.34", "10.0.0.1"],
    "rebind.test": ["2002:a9fe:a9fe::1"],
}


async def loopback_dns(host: str, port: int) -> list[str]:
    if host not in TEST_DNS:
        raise PageUnavailableError(f"cannot resolve host {host!r}: not in the test's DNS")
    return TEST_DNS[host]


def hostile_crawler(sockets: LoopbackOnlySockets, max_redirects: int = 3) -> Crawler:
    """A crawler that may read 127.0.0.1 (the hostile server) but nothing else private, and
    connects through `sockets` only."""
    policy = CrawlPolicy(
        allowed_hosts=frozenset({"127.0.0.1"}),
        max_bytes=CAP,
        max_redirects=max_redirects,
        fetch_deadline_seconds=DEADLINE,
        # A per-read timeout longer than the deadline: the deadline, not it, must end slow pages.
        timeout_seconds=DEADLINE * 3,
    )
    return Crawler(policy, resolver=loopback_dns, socket_factory=sockets)


@dataclass(frozen=True)
class Cost:
    seconds: float
    peak_bytes: int
    page: Page | None
    error: PageUnavailableError | None

    @property
    def reason(self) -> str:
        assert self.error is not None, f"expected a failure, got the page {self.page}"
        return self.error.reason


async def fetch_costed(crawler: Crawler, url: str) -> Cost:
    """Fetch `url`; any exception other than PageUnavailableError propagates."""
    tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0]
    started = time.monotonic()
    page: Page | None = None
    error: PageUnavailableError | None = None
    try:
        page = await crawler.fetch(url)
    except PageUnavailableError as exc:
        error = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1] - baseline
        tracemalloc.stop()
    return Cost(time.monotonic() - started, peak, page, error)


async def warm_up(crawler: Crawler, url: str) -> None:
    """One fetch, so one-time lazy initialisation (imports inside aiohttp, the crawler's
    connection pool, the first connection) is not counted against the first class measured."""
    with contextlib.suppress(PageUnavailableError):
        await crawler.fetch(url)
