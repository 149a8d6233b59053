"""Native EventSource in a real headless Chromium (Debian's package, driven by playwright).

The page is the API's own live page (notification_api/pages/live.html), served by this
test on loopback origins: one listed in API_CORS_ORIGINS, one not. The API is a real
`learning-jobs api` process, stopped and started again on the same port mid-test.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import BrowserContext, Page
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.responses import FileResponse
from starlette.routing import Route

from learning_platform.core.metrics import free_loopback_port
from learning_platform.core.settings import Settings
from learning_platform.notification_api.app import LIVE_PAGE
from learning_platform.notification_api.browser import COOKIE_NAME
from tests.chromium import chromium
from tests.factories import add_user
from tests.loopback import serve_in_thread
from tests.sse_helpers import api_process, api_settings, metric_value, notify, token

__all__ = ["api_settings"]  # a fixture

pytestmark = pytest.mark.browser

KIND = "session.completed"
WAIT_MS = 20_000
# The shortest lifetime the API accepts (API_STREAM_COOKIE_TTL_SECONDS); the page refreshes
# the cookie after half of it.
COOKIE_TTL_SECONDS = 10


def page_server() -> Starlette:
    async def live(_request: Any) -> FileResponse:
        return FileResponse(LIVE_PAGE)

    return Starlette(routes=[Route("/", live)])


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    async with chromium(tmp_path / "chromium-profile") as context:
        yield context


async def received_ids(page: Page) -> list[int]:
    return [int(item["id"]) for item in await page.evaluate("window.received")]


async def wait_for_count(page: Page, count: int) -> None:
    await page.wait_for_function(f"window.received.length >= {count}", timeout=WAIT_MS)


async def stream_cookie(browser: BrowserContext) -> Any:
    """The stream cookie as the browser holds it (None once it has expired)."""
    return next((c for c in await browser.cookies() if c["name"] == COOKIE_NAME), None)


async def test_a_page_streams_resumes_across_an_api_restart_and_other_origins_get_nothing(
    api_settings: Settings, engine: AsyncEngine, browser: BrowserContext, tmp_path: Path
) -> None:
    user = await add_user(engine)
    api_port = free_loopback_port()
    with serve_in_thread(page_server()) as page_url, serve_in_thread(page_server()) as other_url:
        env = {
            "API_CORS_ORIGINS": json.dumps([page_url]),
            "SSE_RETRY_MILLISECONDS": "300",
        }
        fragment = f"#api=http://127.0.0.1:{api_port}&token={token(user)}"
        page = await browser.new_page()
        async with api_process(api_settings, tmp_path / "api-1.log", env, api_port) as api_url:
            await page.goto(page_url + "/" + fragment)
            await page.wait_for_function("window.opened >= 1", timeout=WAIT_MS)
            first = await notify(engine, user, KIND, n=1)
            await wait_for_count(page, 1)
        # The API is down: these commit while the page has no stream.
        during = [await notify(engine, user, KIND, n=n) for n in (2, 3)]
        async with api_process(api_settings, tmp_path / "api-2.log", env, api_port) as api_url:
            # EventSource reconnects by itself, with the cookie and its Last-Event-ID.
            await wait_for_count(page, 3)
            after = await notify(engine, user, KIND, n=4)
            await wait_for_count(page, 4)

            other = await browser.new_page()
            await other.goto(other_url + "/" + fragment)
            # Refused at once (403): EventSource gives up instead of retrying.
            await other.wait_for_function("window.errors >= 1", timeout=WAIT_MS)
            last = await notify(engine, user, KIND, n=5)
            await wait_for_count(page, 5)
            refused = await metric_value(
                api_url, 'sse_streams_rejected_total{reason="origin_not_allowed"}'
            )
            other_state = await other.evaluate(
                "({received: window.received.length, opened: window.opened, "
                "cookieError: window.cookieError})"
            )
        cookies = {cookie["name"]: cookie for cookie in await browser.cookies()}

    assert await received_ids(page) == [first, *during, after, last]
    assert [item["notification"]["payload"]["n"] for item in await page.evaluate(
        "window.received"
    )] == [1, 2, 3, 4, 5]  # fmt: skip
    assert other_state["received"] == 0
    assert other_state["opened"] == 0
    assert other_state["cookieError"]  # its POST failed CORS: no cookie minted for it
    # Its stream request was refused on the server by its origin, before its credentials were
    # looked at: the browser offers the allowed page's cookie (same site: only the port
    # differs). Its cookie POST never left the browser (the CORS preflight failed).
    assert refused >= 1
    stream_cookie = cookies[COOKIE_NAME]
    assert stream_cookie["httpOnly"] is True
    assert stream_cookie["sameSite"] == "Strict"
    assert stream_cookie["path"] == "/v1/notifications/stream"
    logs = (tmp_path / "api-1.log").read_text() + (tmp_path / "api-2.log").read_text()
    assert stream_cookie["value"] not in logs


async def test_a_page_reconnects_after_its_first_stream_cookie_expired(
    api_settings: Settings, engine: AsyncEngine, browser: BrowserContext, tmp_path: Path
) -> None:
    """The page refreshes its cookie before it expires: a reconnect long after the first
    cookie's lifetime (here: after an API restart) is let in, not refused."""
    user = await add_user(engine)
    api_port = free_loopback_port()
    with serve_in_thread(page_server()) as page_url:
        env = {
            "API_CORS_ORIGINS": json.dumps([page_url]),
            "SSE_RETRY_MILLISECONDS": "300",
            "API_STREAM_COOKIE_TTL_SECONDS": str(COOKIE_TTL_SECONDS),
        }
        page = await browser.new_page()
        async with api_process(api_settings, tmp_path / "api-1.log", env, api_port):
            await page.goto(f"{page_url}/#api=http://127.0.0.1:{api_port}&token={token(user)}")
            await page.wait_for_function("window.opened >= 1", timeout=WAIT_MS)
            first_cookie = await stream_cookie(browser)
            first = await notify(engine, user, KIND, n=1)
            await wait_for_count(page, 1)
            # The browser's clock past the first cookie's expiry (the event this test is about).
            await page.wait_for_function(
                f"Date.now() / 1000 > {first_cookie['expires']} + 1",
                polling=200,
                timeout=(COOKIE_TTL_SECONDS + 10) * 1000,
            )
            refreshed = await stream_cookie(browser)
        during = await notify(engine, user, KIND, n=2)
        async with api_process(api_settings, tmp_path / "api-2.log", env, api_port):
            await wait_for_count(page, 2)
            after = await notify(engine, user, KIND, n=3)
            await wait_for_count(page, 3)
            state = await page.evaluate("({opened: window.opened, refused: window.refused})")

    assert refreshed is not None, "the first cookie expired and no refreshed one replaced it"
    assert refreshed["expires"] > first_cookie["expires"]
    assert await received_ids(page) == [first, during, after]
    # Reconnected at once with the refreshed cookie: never refused, no start over. (A refresh
    # due while the API was down failed and was retried: window.cookieError may be set.)
    assert state == {"opened": 2, "refused": 0}
