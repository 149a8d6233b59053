"""Reading a visited page's main text, safely.

SSRF guard: only http(s) URLs without credentials, whose host is a public address or resolves
only to public addresses (`public_addresses.py`), are fetched; the check runs on
every redirect hop, and the connection goes to the address that was checked (the URL's host is
kept for the Host header and TLS SNI), so a DNS answer cannot change between the check and the
connection. `allowed_hosts` lets named hosts through for tests and intranets.

Bounds: one deadline covers the whole fetch (DNS, connect, headers, body, every redirect hop);
the body is decoded a bounded piece at a time and capped at `max_bytes` raw and decoded
(`learning_platform.crawler.page_body`); headers are capped by httpcore (100 KiB); text extraction
reads at most `max_extract_chars` of the page.

Failures: everything a page can cause ends as `PageUnavailableError` with a reason — errors of
httpx, URL parsing (`httpx.InvalidURL`, IDNA's `UnicodeError`), name resolution, decompression
and charsets in this module, and any `Exception` from the third-party HTML extraction, which runs
on the page's bytes (logged with its traceback so a bug there is still seen). Other exceptions
are programming errors in this code and escape, as does cancellation.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import trafilatura

from learning_platform.crawler.errors import PageUnavailableError as PageUnavailableError
from learning_platform.crawler.errors import UnsafeUrlError as UnsafeUrlError
from learning_platform.crawler.page_body import ACCEPT_ENCODING, body_text, read_capped
from learning_platform.crawler.public_addresses import ip_literal, is_public_address

log = logging.getLogger(__name__)

Resolver = Callable[[str, int], Awaitable[list[str]]]

_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Extraction falls back to whatever text there is; a few words (a menu) is not content.
_MIN_WORDS = 5
# Errors of the page's own making raised while talking to it: the URL or a Location header
# httpx cannot parse or IDNA cannot encode, and what a hostile server makes httpx raise.
_PAGE_ERRORS = (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, UnicodeError, ValueError)


@dataclass(frozen=True)
class CrawlPolicy:
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)
    max_bytes: int = 5_000_000
    max_redirects: int = 5
    fetch_deadline_seconds: float = 30
    # Extraction is superlinear in the number of elements and runs in a thread no deadline can
    # stop: 1 MB of short paragraphs took 33 s of CPU (5 MB: many minutes). The LLM sees a few
    # thousand tokens of the text anyway, so only the start of a long page is read.
    max_extract_chars: int = 500_000
    user_agent: str = "learning-jobs/0.1 (+mind maps of study sessions)"


@dataclass(frozen=True)
class Page:
    url: str
    title: str
    text: str


@dataclass(frozen=True)
class PageHtml:
    url: httpx.URL
    status: int
    html: str


async def system_resolver(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise PageUnavailableError(f"cannot resolve host {host!r}: {exc.strerror}") from exc
    except (OSError, UnicodeError, ValueError) as exc:
        raise PageUnavailableError(f"cannot resolve host {host!r}: {exc}") from exc
    return [str(info[4][0]) for info in infos]


class Crawler:
    def __init__(
        self,
        client: httpx.AsyncClient,
        policy: CrawlPolicy,
        resolver: Resolver = system_resolver,
    ) -> None:
        """`client` must not follow redirects itself: each hop is checked here."""
        self._client = client
        self._policy = policy
        self._resolve = resolver

    async def fetch(self, url: str) -> Page:
        """The page's title and main text; PageUnavailableError says why not."""
        body = await self.fetch_html(url)
        html = body.html[: self._policy.max_extract_chars]
        try:
            # Extraction is CPU work; a thread keeps the worker's event loop responsive.
            title, text = await asyncio.to_thread(extract_main_text, html, str(body.url))
        except Exception as exc:
            # No URL: the caller logs which page of which session this was.
            log.warning("text extraction failed", exc_info=True)
            raise PageUnavailableError(
                f"the page could not be parsed ({type(exc).__name__})", body.status
            ) from exc
        if len(text.split()) < _MIN_WORDS:
            raise PageUnavailableError("no readable text on the page", body.status)
        return Page(url=str(body.url), title=title, text=text)

    async def fetch_html(self, url: str) -> PageHtml:
        """The page's HTML within the fetch deadline and the size cap."""
        deadline = self._policy.fetch_deadline_seconds
        try:
            async with asyncio.timeout(deadline):
                return await self._follow(url)
        except PageUnavailableError:
            raise
        except TimeoutError as exc:
            raise PageUnavailableError(f"the page took longer than {deadline:g} s") from exc
        except httpx.TimeoutException as exc:
            raise PageUnavailableError("the page took too long to answer") from exc
        except _PAGE_ERRORS as exc:
            raise PageUnavailableError(
                f"could not fetch the page ({type(exc).__name__}: {str(exc)[:200]})"
            ) from exc

    async def _follow(self, url: str) -> PageHtml:
        current = httpx.URL(url)
        for _ in range(self._policy.max_redirects + 1):
            target = await self.checked_target(current)
            request = self._client.build_request(
                "GET",
                target,
                headers={
                    "Host": _host_header(current),
                    "User-Agent": self._policy.user_agent,
                    "Accept-Encoding": ACCEPT_ENCODING,
                },
                extensions={"sni_hostname": current.host} if target != current else None,
            )
            response = await self._client.send(request, stream=True)
            try:
                if response.status_code in _REDIRECTS and "location" in response.headers:
                    current = current.join(response.headers["location"])
                    continue
                return await self._read(current, response)
            finally:
                await response.aclose()
        raise PageUnavailableError(f"more than {self._policy.max_redirects} redirects")

    async def checked_target(self, url: httpx.URL) -> httpx.URL:
        """The URL to connect to: `url` itself for allowed hosts, else `url` with its host
        replaced by a checked public address. Raises UnsafeUrlError."""
        if url.scheme not in ("http", "https"):
            raise UnsafeUrlError(f"only http and https pages are read, not {url.scheme[:20]}:")
        if url.userinfo:
            raise UnsafeUrlError("URLs with credentials are not fetched")
        host = url.host.lower().removesuffix(".")
        if not host:
            raise UnsafeUrlError("the URL has no host")
        if url.port is not None and not 0 < url.port < 65536:
            raise PageUnavailableError(f"the URL's port {url.port} is not a TCP port")
        if host in self._policy.allowed_hosts:
            return url
        literal = ip_literal(host)
        if literal is not None:
            addresses = [str(literal)]
        else:
            port = url.port or (443 if url.scheme == "https" else 80)
            addresses = await self._resolve(host, port)
        if not addresses:
            raise PageUnavailableError(f"host {host!r} has no address")
        private = [a for a in addresses if not is_public_address(a)]
        if private:
            raise UnsafeUrlError(
                f"host {host!r} resolves to a non-public address ({private[0]}); add it to "
                "CRAWLER_ALLOWED_HOSTS if it should be read"
            )
        return url.copy_with(host=addresses[0])

    async def _read(self, url: httpx.URL, response: httpx.Response) -> PageHtml:
        status = response.status_code
        if status >= 400:
            raise PageUnavailableError(f"the server answered HTTP {status}", status)
        media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type not in _HTML_TYPES:
            raise PageUnavailableError(
                f"not a web page (content type {media_type[:60] or 'missing'})", status
            )
        limit = self._policy.max_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise PageUnavailableError(f"the page is larger than {limit:,} bytes", status)
        encodings = response.headers.get_list("content-encoding", split_commas=True)
        body = await read_capped(response.aiter_raw(), encodings, limit, status)
        return PageHtml(url, status, body_text(body, response.charset_encoding))


def extract_main_text(html: str, url: str) -> tuple[str, str]:
    """The page's <title> and its main text (comments, navigation and boilerplate left out).

    Trafilatura's metadata pass (dates, authors, categories) is skipped: it cost most of the
    extraction time and only the title is wanted. `fast` skips the second-opinion extractors,
    which made extraction several times slower for a little more recall on odd layouts.
    """
    tree = trafilatura.load_html(html)
    if tree is None:
        return "", ""
    title = " ".join((tree.findtext(".//title") or "").split())
    document = trafilatura.bare_extraction(
        tree, url=url, with_metadata=False, include_comments=False, fast=True
    )
    return title, (getattr(document, "text", None) or "").strip()


def _host_header(url: httpx.URL) -> str:
    default_port = {"http": 80, "https": 443}[url.scheme]
    host = f"[{url.host}]" if ":" in url.host else url.host
    return host if url.port in (None, default_port) else f"{host}:{url.port}"


def build_http_client(timeout_seconds: float) -> httpx.AsyncClient:
    # Few idle connections: httpx checks every idle connection's socket on every request
    # (≈ 1 ms of CPU per request with 20 of them), and pages of one session are on many hosts.
    return httpx.AsyncClient(
        follow_redirects=False,
        timeout=httpx.Timeout(timeout_seconds),
        trust_env=False,
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=4),
    )
