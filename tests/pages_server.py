"""Web pages on loopback for crawler and session tests: articles, a huge page, a binary file,
redirect chains, a redirect to a private address, 404 and an empty page."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from tests.loopback import serve_in_thread

TOPICS = [
    ("Spaced repetition", "spaced repetition", "review intervals grow after each recall"),
    ("Forgetting curve", "the forgetting curve", "memory decays fast without any review"),
    ("Testing effect", "the testing effect", "retrieval practice strengthens memory traces"),
    ("Mind map", "a mind map", "a central topic branches into related ideas"),
    ("Interleaving", "interleaving", "mixing problem types improves transfer"),
]


def article_html(index: int, latency_note: str = "") -> str:
    title, subject, fact = TOPICS[index % len(TOPICS)]
    paragraphs = "".join(
        f"<p>{subject.capitalize()} is studied by learning scientists, paragraph {n}. "
        f"Researchers found that {fact}. Students who understand {subject} plan their study "
        f"time better and remember more of what they read. {latency_note}</p>"
        for n in range(1, 6)
    )
    return (
        f"<html><head><title>{title} (page {index})</title></head><body>"
        "<nav><a href='/'>Home</a> | <a href='/about'>About</a> | Login</nav>"
        f"<article><h1>{title}</h1>{paragraphs}</article>"
        "<footer>Copyright footer text and cookie banner</footer></body></html>"
    )


async def _article(request: Request) -> Response:
    return HTMLResponse(article_html(int(request.path_params["n"])))


async def _huge(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"<html><body><article>"
        for _ in range(2000):
            yield b"<p>" + b"filler text " * 100 + b"</p>"
            await asyncio.sleep(0)

    return StreamingResponse(chunks(), media_type="text/html")


async def _binary(request: Request) -> Response:
    return Response(bytes(range(256)) * 10, media_type="application/octet-stream")


async def _redirect(request: Request) -> Response:
    hops = int(request.path_params["hops"])
    target = "/article/0" if hops <= 1 else f"/redirect/{hops - 1}"
    return RedirectResponse(target, status_code=302)


async def _to(request: Request) -> Response:
    return RedirectResponse(request.query_params["url"], status_code=302)


async def _missing(request: Request) -> Response:
    return PlainTextResponse("not here", status_code=404)


async def _empty(request: Request) -> Response:
    return HTMLResponse("<html><body><nav>Home</nav></body></html>")


def pages_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/article/{n:int}", _article),
            Route("/huge", _huge),
            Route("/binary", _binary),
            Route("/redirect/{hops:int}", _redirect),
            Route("/to", _to),
            Route("/missing", _missing),
            Route("/empty", _empty),
        ]
    )


@contextmanager
def serving_pages() -> Iterator[str]:
    """Yields the base URL, http://127.0.0.1:PORT."""
    with serve_in_thread(pages_app()) as url:
        yield url
