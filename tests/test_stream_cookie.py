"""The browser path without a browser: the stream cookie, the origin check, CORS and `retry:`.

tests/test_browser_stream.py runs the same path in Chromium (make test-browser); these checks
run in make test and pin down each attribute and refusal.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie

import httpx
import jwt
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from learning_platform.core.settings import Settings
from learning_platform.notification_api.browser import COOKIE_NAME, STREAM_COOKIE_PATH
from tests.factories import add_user
from tests.sse_helpers import (
    SECRET,
    STREAM_PATH,
    Event,
    Retry,
    api_server,
    api_settings,
    notify,
    open_stream,
    sse_items,
    token,
)

__all__ = ["api_settings"]  # a fixture

PAGE = "http://app.example.test"
OTHER_PAGE = "http://evil.example.test"


@pytest.fixture
def browser_settings(api_settings: Settings) -> Settings:
    return api_settings.model_copy(
        update={"api_cors_origins": [PAGE], "sse_retry_milliseconds": 1500}
    )


@pytest.fixture
async def base_url(browser_settings: Settings, engine: AsyncEngine) -> AsyncIterator[str]:
    async with api_server(browser_settings) as url:
        yield url


async def stream_answer(http: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    """The stream's answer, closed at once if it is a stream (so a guard that fails to refuse
    fails the test instead of hanging it)."""
    async with http.stream("GET", STREAM_PATH, headers=headers) as response:
        if response.status_code != 200:
            await response.aread()
        return response


async def mint_cookie(http: httpx.AsyncClient, user_id: int) -> tuple[httpx.Response, str]:
    response = await http.post(
        STREAM_COOKIE_PATH, headers={"Authorization": f"Bearer {token(user_id)}", "Origin": PAGE}
    )
    assert response.status_code == 200, response.text
    return response, SimpleCookie(response.headers["set-cookie"])[COOKIE_NAME].value


async def test_the_cookie_is_httponly_strict_secure_short_lived_and_scoped_to_the_stream(
    base_url: str, browser_settings: Settings
) -> None:
    async with httpx.AsyncClient(base_url=base_url) as http:
        response, _value = await mint_cookie(http, 1)
    morsel = SimpleCookie(response.headers["set-cookie"])[COOKIE_NAME]
    ttl = int(browser_settings.api_stream_cookie_ttl_seconds)

    assert morsel["httponly"] is True
    assert morsel["secure"] is True
    assert morsel["samesite"] == "strict"
    assert morsel["path"] == STREAM_PATH
    assert morsel["max-age"] == str(ttl)
    assert response.json() == {"expires_in": ttl, "refresh_in": ttl // 2}
    assert response.headers["access-control-allow-origin"] == PAGE
    assert response.headers["access-control-allow-credentials"] == "true"


async def test_a_cookie_opens_only_its_own_users_stream(base_url: str, engine: AsyncEngine) -> None:
    alice, bob = await add_user(engine, "alice@example.com"), await add_user(engine, "b@x.org")
    async with httpx.AsyncClient(base_url=base_url, timeout=None) as http:
        _, cookie = await mint_cookie(http, alice)
        headers = {"Cookie": f"{COOKIE_NAME}={cookie}", "Origin": PAGE}
        async with http.stream("GET", STREAM_PATH, headers=headers) as response:
            assert response.status_code == 200
            assert response.headers["access-control-allow-origin"] == PAGE
            items = sse_items(response)
            assert await anext(items) == Retry(1500)
            await notify(engine, bob, owner="bob")
            mine = await notify(engine, alice, owner="alice")
            while not isinstance(item := await anext(items), Event):
                pass

    assert item.id == str(mine)


async def test_bad_cookies_and_crossed_credentials_are_refused(base_url: str) -> None:
    now = int(time.time())
    async with httpx.AsyncClient(base_url=base_url) as http:
        _, cookie = await mint_cookie(http, 1)
        bearer_as_cookie = token(1)
        forged = jwt.encode(
            {"sub": "1", "exp": now + 60, "aud": "notifications-stream-cookie"}, SECRET, "HS256"
        )
        answers = {
            name: await stream_answer(http, {"Cookie": f"{COOKIE_NAME}={value}"})
            for name, value in (
                ("a bearer token as cookie", bearer_as_cookie),
                ("signed with the JWT secret itself", forged),
                ("garbage", "x.y.z"),
            )
        }
        answers["the cookie as a bearer token"] = await stream_answer(
            http, {"Authorization": f"Bearer {cookie}"}
        )

    for name, answer in answers.items():
        assert answer.status_code == 401, name
        assert answer.json()["error"] == "invalid_token", name
        assert 'error="invalid_token"' in answer.headers["www-authenticate"], name


async def test_other_origins_are_refused_and_get_no_cors_grant(base_url: str) -> None:
    bearer = {"Authorization": f"Bearer {token(1)}"}
    async with httpx.AsyncClient(base_url=base_url) as http:
        stream = await stream_answer(http, {**bearer, "Origin": OTHER_PAGE})
        cookie = await http.post(STREAM_COOKIE_PATH, headers={**bearer, "Origin": OTHER_PAGE})
        preflight, allowed_preflight = [
            await http.options(
                STREAM_COOKIE_PATH,
                headers={
                    "Origin": origin,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization",
                },
            )
            for origin in (OTHER_PAGE, PAGE)
        ]
        no_bearer = await http.post(STREAM_COOKIE_PATH, headers={"Origin": PAGE})

    for answer in (stream, cookie):
        assert answer.status_code == 403
        assert answer.json()["error"] == "origin_not_allowed"
        assert "API_CORS_ORIGINS" in answer.json()["message"]
        assert "access-control-allow-origin" not in answer.headers
        assert "set-cookie" not in answer.headers
    assert "access-control-allow-origin" not in preflight.headers
    assert allowed_preflight.headers["access-control-allow-origin"] == PAGE
    assert no_bearer.status_code == 401
    assert no_bearer.json()["error"] == "missing_token"


async def test_server_clients_still_use_the_bearer_header_and_get_retry(base_url: str) -> None:
    async with open_stream(base_url, token(1)) as stream:
        await stream.next_item()

    assert stream.retry == Retry(1500)


async def test_the_dev_live_page_is_served_only_when_asked(
    base_url: str, browser_settings: Settings, engine: AsyncEngine
) -> None:
    async with httpx.AsyncClient(base_url=base_url) as http:
        off = await http.get("/dev/live")
    dev_settings = browser_settings.model_copy(update={"api_dev_live_page": True})
    async with api_server(dev_settings) as url, httpx.AsyncClient(base_url=url) as http:
        on = await http.get("/dev/live")

    assert off.status_code == 404
    assert on.status_code == 200
    assert on.headers["content-type"].startswith("text/html")
    assert "new EventSource(" in on.text


async def test_a_new_eventsource_resumes_with_the_last_event_id_parameter(
    base_url: str, engine: AsyncEngine
) -> None:
    """A page whose EventSource gave up (say, its cookie expired while the laptop slept) opens
    a new one, which cannot set Last-Event-ID: the URL carries it; the header, which the
    browser sends on the new one's reconnects, wins."""
    user = await add_user(engine)
    ids = [await notify(engine, user, n=n) for n in range(4)]
    async with httpx.AsyncClient(base_url=base_url, timeout=None) as http:
        _, cookie = await mint_cookie(http, user)
        headers = {"Cookie": f"{COOKIE_NAME}={cookie}", "Origin": PAGE}
        received = {}
        url = f"{STREAM_PATH}?last_event_id={ids[0]}"
        for name, extra in (("parameter", {}), ("header wins", {"Last-Event-ID": str(ids[2])})):
            async with http.stream("GET", url, headers={**headers, **extra}) as response:
                assert response.status_code == 200, name
                events = (item async for item in sse_items(response) if isinstance(item, Event))
                first = await anext(events)
            received[name] = int(first.id)
        bad = [
            (await http.get(f"{STREAM_PATH}?{query}", headers=headers)).json()["error"]
            for query in ("last_event_id=-1", "last_event_id=1&x=2", "last_event_id", "lastId=1")
        ]

    assert received == {"parameter": ids[1], "header wins": ids[3]}
    assert bad == ["invalid_last_event_id", "invalid_request", "invalid_last_event_id",
                   "invalid_request"]  # fmt: skip
