"""Web pages on loopback, some of which answer only once the test lets them: sessions that
crawl them stay in the middle of their work until then."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from tests.loopback import serve_in_thread
from tests.pages_server import article_html


@contextmanager
def serving_held_pages() -> Iterator[tuple[str, threading.Event]]:
    """Yields the base URL and the event that releases every `/held/{n}` page."""
    release = threading.Event()

    async def article(request: Request) -> Response:
        return HTMLResponse(article_html(int(request.path_params["n"])))

    async def held(request: Request) -> Response:
        await asyncio.to_thread(release.wait)
        return HTMLResponse(article_html(int(request.path_params["n"]) + 1))

    app = Starlette(routes=[Route("/article/{n:int}", article), Route("/held/{n:int}", held)])
    with serve_in_thread(app) as url:
        try:
            yield url, release
        finally:
            release.set()
