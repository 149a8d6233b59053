"""Reading a visited page's main text, safely.

SSRF guard: only http(s) URLs without credentials, whose host resolves only to public
addresses, are fetched; the check runs on every redirect hop, and the connection goes to the
address that was checked (the URL's host is kept for the Host header and TLS SNI), so a DNS
answer cannot change between the check and the connection. `allowed_hosts` lets named hosts
through for tests and intranets.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import trafilatura

Resolver = Callable[[str, int], Awaitable[list[str]]]

_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Extraction falls back to whatever text there is; a few words (a menu) is not content.
_MIN_WORDS = 5


class PageUnavailableError(Exception):
    """The page cannot be read; `reason` says why in words a user understands."""

    def __init__(self, reason: str, http_status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.http_status = http_status


class UnsafeUrlError(PageUnavailableError):
    """Refused by the SSRF guard."""


@dataclass(frozen=True)
class CrawlPolicy:
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)
    max_bytes: int = 5_000_000
    max_redirects: int = 5
    user_agent: str = "learning-jobs/0.1 (+mind maps of study sessions)"


@dataclass(frozen=True)
class Page:
    url: str
    title: str
    text: str


async def system_resolver(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise PageUnavailableError(f"cannot resolve host {host!r}: {exc.strerror}") from exc
    return [str(info[4][0]) for info in infos]


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


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
        current = httpx.URL(url)
        for _ in range(self._policy.max_redirects + 1):
            target = await self.checked_target(current)
            request = self._client.build_request(
                "GET",
                target,
                headers={"Host": _host_header(current), "User-Agent": self._policy.user_agent},
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
            raise UnsafeUrlError(f"only http and https pages are read, not {url.scheme}:")
        if url.userinfo:
            raise UnsafeUrlError("URLs with credentials are not fetched")
        if not url.host:
            raise UnsafeUrlError("the URL has no host")
        if url.host.lower() in self._policy.allowed_hosts:
            return url
        port = url.port or (443 if url.scheme == "https" else 80)
        addresses = [url.host] if _is_ip_literal(url.host) else await self._resolve(url.host, port)
        if not addresses:
            raise PageUnavailableError(f"host {url.host!r} has no address")
        private = [a for a in addresses if not is_public_address(a)]
        if private:
            raise UnsafeUrlError(
                f"host {url.host!r} resolves to a non-public address ({private[0]}); add it to "
                "CRAWLER_ALLOWED_HOSTS if it should be read"
            )
        return url.copy_with(host=addresses[0])

    async def _read(self, url: httpx.URL, response: httpx.Response) -> Page:
        if response.status_code >= 400:
            raise PageUnavailableError(
                f"the server answered HTTP {response.status_code}", response.status_code
            )
        media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type not in _HTML_TYPES:
            raise PageUnavailableError(
                f"not a web page (content type {media_type or 'missing'})", response.status_code
            )
        body = await self._capped_body(response)
        html = body.decode(response.encoding or "utf-8", errors="replace")
        # Extraction is CPU work; a thread keeps the worker's event loop responsive.
        title, text = await asyncio.to_thread(extract_main_text, html, str(url))
        if len(text.split()) < _MIN_WORDS:
            raise PageUnavailableError("no readable text on the page", response.status_code)
        return Page(url=str(url), title=title, text=text)

    async def _capped_body(self, response: httpx.Response) -> bytes:
        limit = self._policy.max_bytes
        too_big = PageUnavailableError(
            f"the page is larger than {limit:,} bytes", response.status_code
        )
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise too_big
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise too_big
            chunks.append(chunk)
        return b"".join(chunks)


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


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _host_header(url: httpx.URL) -> str:
    default_port = {"http": 80, "https": 443}[url.scheme]
    host = f"[{url.host}]" if ":" in url.host else url.host
    return host if url.port in (None, default_port) else f"{host}:{url.port}"


def crawl_failure_reason(exc: Exception) -> str:
    """A short reason for any error while fetching a page."""
    if isinstance(exc, PageUnavailableError):
        return exc.reason
    if isinstance(exc, httpx.TimeoutException):
        return "the page took too long to answer"
    if isinstance(exc, httpx.HTTPError):
        return f"could not fetch the page ({type(exc).__name__}: {exc})"
    raise exc


def build_http_client(timeout_seconds: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        follow_redirects=False,
        timeout=httpx.Timeout(timeout_seconds),
        trust_env=False,
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
    )
