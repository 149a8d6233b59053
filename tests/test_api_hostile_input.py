"""Hostile requests against the real API server: bounded answers, bounded connections, no leaks.

Every malformed header gets a 400-class answer whose JSON `error` and `WWW-Authenticate` error
agree; clients that hold a connection without finishing their request are disconnected; the
log of a real `learning-jobs api` process holds no token, whatever the client did with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from learning_platform.core.settings import Settings
from tests.sse_helpers import (
    STREAM_PATH,
    Comment,
    api_process,
    api_server,
    api_settings,
    open_stream,
    token,
)

__all__ = ["api_settings"]  # a fixture

READ_TIMEOUT = 1.0
Headers = list[tuple[str, str | bytes]]


@pytest.fixture
def hostile_settings(api_settings: Settings) -> Settings:
    return api_settings.model_copy(
        update={"api_request_read_timeout_seconds": READ_TIMEOUT, "api_keep_alive_seconds": 0.5}
    )


@pytest.fixture
async def base_url(hostile_settings: Settings, engine: AsyncEngine) -> AsyncIterator[str]:
    async with api_server(hostile_settings) as url:
        yield url


def bearer(user_id: int = 1) -> tuple[str, str]:
    return ("Authorization", f"Bearer {token(user_id)}")


def resuming(*last_event_ids: str | bytes) -> Headers:
    return [bearer(), *[("Last-Event-ID", value) for value in last_event_ids]]


BAD_CURSOR = "invalid_last_event_id"
BAD_REQUEST = "invalid_request"
MALFORMED: dict[str, tuple[Headers, int, str]] = {
    "Last-Event-ID of 5,000 digits": (resuming("9" * 5000), 400, BAD_CURSOR),
    "Last-Event-ID beyond int64": (resuming(str(2**63)), 400, BAD_CURSOR),
    "negative Last-Event-ID": (resuming("-1"), 400, BAD_CURSOR),
    "Last-Event-ID not digits": (resuming("abc"), 400, BAD_CURSOR),
    "Last-Event-ID with inner space": (resuming("1 2"), 400, BAD_CURSOR),
    "Last-Event-ID in Arabic digits": (resuming("١٢".encode()), 400, BAD_CURSOR),
    "Last-Event-ID superscript": (resuming("²".encode("latin-1")), 400, BAD_CURSOR),
    "empty Last-Event-ID": (resuming(""), 400, BAD_CURSOR),
    "two Last-Event-IDs": (resuming("1", "2"), 400, BAD_CURSOR),
    "empty Authorization": ([("Authorization", "")], 400, "invalid_request"),
    "Bearer without a token": ([("Authorization", "Bearer")], 400, "invalid_request"),
    "Bearer and spaces": ([("Authorization", "Bearer    ")], 400, "invalid_request"),
    "Basic": ([("Authorization", "Basic dXNlcjpwdw==")], 400, "invalid_request"),
    "two Authorization headers": ([bearer(), bearer()], 400, "invalid_request"),
    "token of 5,000 characters": ([("Authorization", "Bearer " + "a" * 5000)], 400, BAD_REQUEST),
    "token with a space": ([("Authorization", "Bearer abc def")], 400, "invalid_request"),
    "token with non-ASCII bytes": ([("Authorization", "Bearer é".encode())], 400, BAD_REQUEST),
    "JWT of garbage": ([("Authorization", "Bearer a.b.c")], 401, "invalid_token"),
    "100 headers": ([bearer(), *[(f"X-{n}", "y") for n in range(100)]], 431, "headers_too_large"),
    "17 KiB of headers": ([bearer(), ("X-Pad", "p" * 17_000)], 431, "headers_too_large"),
}  # fmt: skip


@contextlib.asynccontextmanager
async def raw_connection(
    base_url: str,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    address = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


@dataclass(frozen=True)
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def raw_get(base_url: str, headers: Headers) -> RawAnswer:
    """GET the stream with exactly these header bytes (httpx refuses to send some of them)."""
    lines = [f"GET {STREAM_PATH} HTTP/1.1".encode(), b"Host: x", b"Connection: close"]
    lines += [
        name.encode() + b": " + (value if isinstance(value, bytes) else value.encode())
        for name, value in headers
    ]
    async with raw_connection(base_url) as (reader, writer):
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n")
        async with asyncio.timeout(5):
            answer = await reader.read()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in header_lines)
    return RawAnswer(int(status_line.split()[1]), {k.lower(): v for k, v in fields.items()}, body)


async def test_malformed_headers_get_a_4xx_whose_body_and_header_codes_agree(
    base_url: str,
) -> None:
    for name, (headers, status, error) in MALFORMED.items():
        answer = await raw_get(base_url, headers)
        assert answer.status == status, (name, answer)
        assert answer.json()["error"] == error, name
        assert answer.json()["message"], name
        authenticate = answer.headers.get("www-authenticate")
        if error in ("invalid_request", "invalid_token"):
            assert authenticate is not None, name
            assert f'error="{error}"' in authenticate, (name, authenticate)
    # The server is unharmed: a good request still opens its stream.
    async with open_stream(base_url, token(1)) as stream:
        assert isinstance(await stream.next_item(), Comment)


async def test_a_token_in_the_query_string_is_refused(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as http:
        response = await http.get(STREAM_PATH, params={"access_token": token(1)})

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "Authorization header" in response.json()["message"]
    assert 'error="invalid_request"' in response.headers["WWW-Authenticate"]


async def trickle(writer: asyncio.StreamWriter, data: bytes, interval: float) -> None:
    """Send `data` a byte at a time, forever, as a slowloris client does."""
    with contextlib.suppress(OSError):
        for byte in itertools.cycle(data):
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(interval)


async def seconds_until_closed(reader: asyncio.StreamReader, within: float) -> float:
    started = time.monotonic()
    async with asyncio.timeout(within):
        with contextlib.suppress(ConnectionResetError):
            while await reader.read(65_536):
                pass
    return time.monotonic() - started


async def test_a_client_that_sends_half_its_headers_is_disconnected(base_url: str) -> None:
    async with raw_connection(base_url) as (reader, writer):
        writer.write(f"GET {STREAM_PATH} HTTP/1.1\r\nHost: x\r\n".encode())
        # A byte every 0.1 s: uvicorn's keep-alive timer alone is re-armed by each one.
        slow = asyncio.create_task(trickle(writer, b"X-Slow: yes\r\n", 0.1))
        try:
            held = await seconds_until_closed(reader, within=READ_TIMEOUT * 5)
        finally:
            slow.cancel()

    assert READ_TIMEOUT * 0.8 < held < READ_TIMEOUT * 3, held


async def test_a_client_that_sends_nothing_is_disconnected(base_url: str) -> None:
    async with raw_connection(base_url) as (reader, _writer):
        held = await seconds_until_closed(reader, within=READ_TIMEOUT * 5)

    assert held < READ_TIMEOUT * 3, held


async def test_a_kept_alive_connection_that_trickles_its_next_request_is_disconnected(
    base_url: str,
) -> None:
    async with raw_connection(base_url) as (reader, writer):
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        slow = asyncio.create_task(trickle(writer, b"GET /healthz HTTP/1.1\r\nX: y\r\n", 0.1))
        try:
            held = await seconds_until_closed(reader, within=READ_TIMEOUT * 5)
        finally:
            slow.cancel()

    assert held < READ_TIMEOUT * 3, held


async def test_a_header_block_that_grows_beyond_the_limit_is_cut_off(
    base_url: str, hostile_settings: Settings
) -> None:
    """Headers still incomplete at the size limit: h11 stops buffering and uvicorn answers."""
    async with raw_connection(base_url) as (reader, writer):
        writer.write(f"GET {STREAM_PATH} HTTP/1.1\r\nHost: x\r\nX-Pad: ".encode())
        writer.write(b"p" * hostile_settings.api_max_header_bytes * 2)
        async with asyncio.timeout(5):
            answer = await reader.read()

    assert answer.startswith(b"HTTP/1.1 400"), answer[:100]


async def test_open_streams_outlive_the_request_read_deadline(base_url: str) -> None:
    """The deadline covers receiving the request, not the response: an SSE client that sends
    nothing more after its request keeps its stream."""
    async with open_stream(base_url, token(1)) as stream:
        started = time.monotonic()
        while time.monotonic() - started < READ_TIMEOUT * 2.5:
            assert isinstance(await stream.next_item(), Comment)


async def test_no_token_reaches_the_log(api_settings: Settings, tmp_path: Path) -> None:
    """The log of a real `learning-jobs api` at INFO, after a client sent tokens every wrong way."""
    log_path = tmp_path / "api.log"
    secrets = {
        "header token": token(1),
        "query token": token(2),
        "path token": token(3),
        "basic credentials": "dXNlcjpodW50ZXIy",
        "garbage token": "garbage.token.value-0123456789",
    }
    async with (
        api_process(api_settings, log_path, {"LOG_LEVEL": "INFO"}) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        async with open_stream(url, secrets["header token"]) as stream:
            assert isinstance(await stream.next_item(), Comment)
        answers = [
            await http.get(STREAM_PATH, params={"access_token": secrets["query token"]}),
            await http.get(f"{STREAM_PATH}/{secrets['path token']}"),
            await http.get(
                STREAM_PATH, headers={"Authorization": f"Basic {secrets['basic credentials']}"}
            ),
            await http.get(
                STREAM_PATH, headers={"Authorization": f"Bearer {secrets['garbage token']}"}
            ),
        ]
    log = log_path.read_text()

    assert [answer.status_code for answer in answers] == [400, 404, 400, 401]
    # The requests were logged (so the log was captured), each one without its secret.
    assert log.count('"msg": "request"') >= 5, log
    assert f'"path": "{STREAM_PATH}"' in log
    for name, secret in secrets.items():
        assert secret not in log, name
    assert api_settings.jwt_secret.get_secret_value() not in log


async def test_connections_beyond_the_limit_get_503_until_others_close(
    api_settings: Settings, engine: AsyncEngine
) -> None:
    """uvicorn's limit_concurrency: SSE_MAX_CONNECTIONS streams + 64 other connections."""
    settings = api_settings.model_copy(update={"sse_max_connections": 1})
    async with api_server(settings) as url, contextlib.AsyncExitStack() as held:
        for _ in range(1 + 64):
            await held.enter_async_context(raw_connection(url))
        async with httpx.AsyncClient(base_url=url) as http:
            refused = await http.get("/healthz")
        await held.aclose()
        async with httpx.AsyncClient(base_url=url) as http:
            admitted = await http.get("/healthz")

    assert refused.status_code == 503
    assert admitted.status_code == 200
