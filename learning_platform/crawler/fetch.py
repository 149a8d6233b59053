"""Reading a visited page's main text, safely.

Client: one `aiohttp` session (its connection pool) per crawler, made on the first fetch in the
running event loop and closed by `aclose` (the AI worker's plugin does, once the worker has
stopped: `activities/registry.py`). Not httpx: a GET cost 2-3 ms of CPU over httpx, ≈ 0.5 ms over
aiohttp (docs/benchmarks.md, issue 16). Cookies are neither kept nor sent (pages of one user's
session must not see another's), proxy variables are not read.

SSRF guard: only http(s) URLs without credentials, whose host is a public address or resolves
only to public addresses (`public_addresses.py`), are fetched; the check runs on every redirect
hop (aiohttp's own redirects are off), and the connection goes to the address that was checked:
the request's URL carries that address, which aiohttp connects to without a lookup, and the
URL's host is kept for the Host header and for TLS SNI and the certificate check (aiohttp's
`server_hostname`, part of its pool key, so a pooled TLS connection serves only the name it was
verified for). A DNS answer therefore cannot change between the check and the connection.
`allowed_hosts` lets named hosts through for tests and intranets; those keep their name in the
URL and are the only names the connector resolves (through the same `resolver`, aiohttp's DNS
cache off); any other name reaching it is a bug here and raises.

Bounds: one deadline covers the whole fetch (DNS, connect, headers, body, every redirect hop);
the body is read raw (aiohttp's decompression off) and decoded a bounded piece at a time, capped
at `max_bytes` raw and decoded (`learning_platform.crawler.page_body`); a declared
`Content-Length` over the cap is refused before the body is read; headers are capped by
aiohttp's parser at 100 lines of at most 8,190 bytes each (the status line too), so ≈ 800 KiB at
worst; text extraction reads at most `max_extract_chars` of the page.

Failures: everything a page can cause ends as `PageUnavailableError` with a reason — aiohttp's
errors (`ClientError`: connection, protocol and framing errors, payload errors, `InvalidURL`),
its per-connect and per-read timeouts, URL parsing (yarl's `ValueError`, IDNA's `UnicodeError`),
name resolution, decompression and charsets in this module, and any `Exception` from the
third-party HTML extraction, which runs on the page's bytes (logged with its traceback so a bug
there is still seen). Reasons name no URL. Other exceptions are programming errors in this code
and escape, as does cancellation.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import trafilatura
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.connector import SocketFactoryType
from aiohttp.http_exceptions import HttpProcessingError
from yarl import URL

from learning_platform.core.http_sessions import LoopSession
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
# Errors of the page's own making raised while talking to it: what a hostile server makes
# aiohttp raise (its pure-Python parser raises protocol errors in the body as they are), and a
# URL or `Location` header yarl cannot parse or IDNA cannot encode.
_PAGE_ERRORS = (aiohttp.ClientError, HttpProcessingError, UnicodeError, ValueError)
# The response head: at most this many header lines, each (and the status line) at most
# `_MAX_LINE` bytes; aiohttp's parser refuses anything larger.
_MAX_HEADERS = 100
_MAX_LINE = 8190
# Connections: pages of one session are on many hosts; a host serving several of the pages in
# flight gets a few connections at once, the others wait for one within the deadline.
_MAX_CONNECTIONS = 100
_MAX_CONNECTIONS_PER_HOST = 8
# The body is taken from aiohttp's buffer at most this much at a time (all it holds at once
# was one more copy of up to a whole socket read, 256 KiB), and aiohttp stops reading the socket
# once twice this is waiting (its default: 128 KiB).
_READ_BUFFER = 16 * 1024
# The port of an authority (`//host:port`), for the reason when yarl refuses it.
_AUTHORITY_PORT = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*:)?//[^/?#]*:([0-9]+)(?:[/?#]|$)")


@dataclass(frozen=True)
class CrawlPolicy:
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)
    max_bytes: int = 5_000_000
    max_redirects: int = 5
    fetch_deadline_seconds: float = 30
    # Each connect and each read of the response (the deadline bounds the whole fetch).
    timeout_seconds: float = 15
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
    url: URL
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
        policy: CrawlPolicy,
        resolver: Resolver = system_resolver,
        *,
        socket_factory: SocketFactoryType | None = None,
    ) -> None:
        """`socket_factory` (aiohttp's hook that opens each connection's socket) is for tests
        that watch where connections go."""
        self._policy = policy
        self._resolve = resolver
        self._socket_factory = socket_factory
        self._connections = LoopSession(self._new_session)

    @property
    def is_closed(self) -> bool:
        """No connection pool is open (none yet, or closed)."""
        return self._connections.is_closed

    async def aclose(self) -> None:
        """Close the connection pool (a later fetch opens a new one)."""
        await self._connections.close()

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
        scope = asyncio.timeout(deadline)
        try:
            async with scope:
                return await self._follow(url)
        except PageUnavailableError:
            raise
        except TimeoutError as exc:  # the deadline, or aiohttp's per-connect or per-read limit
            if scope.expired():
                raise PageUnavailableError(f"the page took longer than {deadline:g} s") from exc
            raise PageUnavailableError("the page took too long to answer") from exc
        except _PAGE_ERRORS as exc:
            raise PageUnavailableError(f"could not fetch the page ({_describe(exc)})") from exc

    async def _follow(self, url: str) -> PageHtml:
        session = self._connections.get()
        current = _parse_url(url)
        for _ in range(self._policy.max_redirects + 1):
            target = await self.checked_target(current)
            checked_address = target is not current
            async with session.get(
                target,
                headers={"Host": _host_header(current)} if checked_address else None,
                server_hostname=current.raw_host if checked_address and _is_tls(current) else None,
                allow_redirects=False,
            ) as response:
                if response.status in _REDIRECTS and "location" in response.headers:
                    current = current.join(_parse_url(response.headers["location"]))
                    continue
                return await self._read(current, response)
        raise PageUnavailableError(f"more than {self._policy.max_redirects} redirects")

    async def checked_target(self, url: URL) -> URL:
        """The URL to connect to: `url` itself for allowed hosts, else `url` with its host
        replaced by a checked public address. Raises UnsafeUrlError."""
        if url.scheme not in ("http", "https"):
            raise UnsafeUrlError(f"only http and https pages are read, not {url.scheme[:20]}:")
        if url.user is not None or url.password is not None:
            raise UnsafeUrlError("URLs with credentials are not fetched")
        # `host` decodes the IDNA labels: an invalid one (`xn--`) raises UnicodeError here.
        host = (url.raw_host or "").lower().removesuffix(".") if url.host else ""
        if not host:
            raise UnsafeUrlError("the URL has no host")
        port = url.explicit_port
        if port is not None and not 0 < port < 65536:
            raise PageUnavailableError(f"the URL's port {port} is not a TCP port")
        if host in self._policy.allowed_hosts:
            return url
        literal = ip_literal(host)
        if literal is not None:
            addresses = [str(literal)]
        else:
            addresses = await self._resolve(host, port or (443 if _is_tls(url) else 80))
        if not addresses:
            raise PageUnavailableError(f"host {host!r} has no address")
        private = [a for a in addresses if not is_public_address(a)]
        if private:
            raise UnsafeUrlError(
                f"host {host!r} resolves to a non-public address ({private[0]}); add it to "
                "CRAWLER_ALLOWED_HOSTS if it should be read"
            )
        # Canonical text: aiohttp connects to an IP literal without resolving it.
        return url.with_host(str(ipaddress.ip_address(addresses[0])))

    async def _read(self, url: URL, response: aiohttp.ClientResponse) -> PageHtml:
        status = response.status
        if status >= 400:
            raise PageUnavailableError(f"the server answered HTTP {status}", status)
        media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type not in _HTML_TYPES:
            raise PageUnavailableError(
                f"not a web page (content type {media_type[:60] or 'missing'})", status
            )
        limit = self._policy.max_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
            raise PageUnavailableError(f"the page is larger than {limit:,} bytes", status)
        encodings = [
            part
            for value in response.headers.getall("content-encoding", ())
            for part in value.split(",")
        ]
        stop_watching = _fail_body_when_connection_drops(response)
        try:
            body = await read_capped(
                response.content.iter_chunked(_READ_BUFFER), encodings, limit, status
            )
        finally:
            stop_watching()
        return PageHtml(url, status, body_text(body, response.charset))

    def _new_session(self) -> aiohttp.ClientSession:
        policy = self._policy
        connector = aiohttp.TCPConnector(
            limit=_MAX_CONNECTIONS,
            limit_per_host=_MAX_CONNECTIONS_PER_HOST,
            use_dns_cache=False,
            resolver=_AllowedHostsResolver(policy.allowed_hosts, self._resolve),
            socket_factory=self._socket_factory,
        )
        return aiohttp.ClientSession(
            connector=connector,
            headers={"User-Agent": policy.user_agent, "Accept-Encoding": ACCEPT_ENCODING},
            timeout=aiohttp.ClientTimeout(
                total=None,
                sock_connect=policy.timeout_seconds,
                sock_read=policy.timeout_seconds,
            ),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            read_bufsize=_READ_BUFFER,
            max_line_size=_MAX_LINE,
            max_field_size=_MAX_LINE,
            max_headers=_MAX_HEADERS,
            trust_env=False,
        )


class _AllowedHostsResolver(AbstractResolver):
    """The connector's name resolution: `allowed_hosts` only, through the crawler's resolver.
    Every other URL the crawler requests carries a checked IP address, which aiohttp does not
    resolve, so any other name here is a bug in the guard: it raises rather than connect."""

    def __init__(self, allowed_hosts: frozenset[str], resolve: Resolver) -> None:
        self._allowed_hosts = allowed_hosts
        self._resolve = resolve

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        name = host.lower().removesuffix(".")
        if name not in self._allowed_hosts:
            raise RuntimeError("the crawler's connector was asked for a host it did not check")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in await self._resolve(name, port)
        ]

    async def close(self) -> None:
        pass


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


def _parse_url(text: str) -> URL:
    """`text` as a URL; yarl refuses a port outside 0-65535 with a ValueError, reported here
    as what it is."""
    try:
        return URL(text)
    except ValueError as exc:
        port = _AUTHORITY_PORT.match(text)
        if port is not None and (len(port[1]) > 5 or int(port[1]) > 65535):
            raise PageUnavailableError(f"the URL's port {port[1][:10]} is not a TCP port") from exc
        raise


def _is_tls(url: URL) -> bool:
    return url.scheme == "https"


def _host_header(url: URL) -> str:
    host = url.raw_host or ""
    host = f"[{host}]" if ":" in host else host
    port = url.explicit_port
    return host if port in (None, 443 if _is_tls(url) else 80) else f"{host}:{port}"


def _fail_body_when_connection_drops(response: aiohttp.ClientResponse) -> Callable[[], None]:
    """Fails the body's stream if the connection closes while it is neither complete nor failed;
    returns the function that stops watching.

    A workaround for aiohttp's C parser (3.14): a framing error in the body after the head was
    delivered (a bogus chunk size in a later packet) makes it drop the body's stream without an
    error and close the connection, which also stops the per-read timeout; the stream would then
    wait until the fetch deadline. The pure-Python parser fails the stream, as this does.
    """
    connection = response.connection
    protocol = connection.protocol if connection is not None else None
    if protocol is None:
        return _nothing  # the body is complete, or its connection already gone (and handled)
    body = response.content

    def fail_unfinished(_: object = None) -> None:
        if not body.is_eof() and body.exception() is None:
            body.set_exception(aiohttp.ClientPayloadError("the connection closed inside the body"))

    closed = protocol.closed
    if closed is None:  # closed before anyone asked
        fail_unfinished()
        return _nothing
    closed.add_done_callback(fail_unfinished)

    def stop() -> None:
        closed.remove_done_callback(fail_unfinished)

    return stop


def _nothing() -> None:
    pass


def _describe(exc: Exception) -> str:
    """The error's type and message on one line (aiohttp's parser errors draw a pointer under
    the offending bytes) without the URL aiohttp puts into some messages."""
    if isinstance(exc, aiohttp.ClientResponseError):
        detail = f"{exc.status}, {exc.message}"
    elif isinstance(exc, aiohttp.InvalidURL):
        detail = str(exc.description or "invalid URL")
    elif isinstance(exc, aiohttp.ClientConnectorError):
        detail = str(exc.os_error.strerror or exc.os_error)
    else:
        detail = str(exc)
    return f"{type(exc).__name__}: {' '.join(detail.split())[:200]}"
