"""Serving the notification API on loopback ports and reading its streams as a client does."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from learning_platform.core.database import resolve_database_url
from learning_platform.core.metrics import free_loopback_port
from learning_platform.core.notifications import record_notification
from learning_platform.core.settings import PROJECT_ROOT, Settings
from learning_platform.notification_api import create_app
from learning_platform.notification_api.app import STREAM_PATH
from learning_platform.notification_api.server import server_config

SECRET = "test-secret-long-enough-for-hs512-" + "s" * 30  # 64 bytes: no key-length warning
HEARTBEAT = 0.25


@pytest.fixture
def api_settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=tmp_path,
        metrics_port=0,
        jwt_secret=SecretStr(SECRET),
        sse_heartbeat_seconds=HEARTBEAT,
        database_pool_size=4,
    )


def token(user_id: int | str, **claims: Any) -> str:
    """An HS256 token signed with SECRET; a claim given as None is left out."""
    body = {"sub": str(user_id), "exp": int(time.time()) + 600, **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, SECRET, "HS256")


async def notify(
    engine: AsyncEngine, user_id: int, kind: str = "question_set.completed", **payload: Any
) -> int:
    """A notification written the way jobs write them (record_notification, committed)."""
    async with engine.begin() as conn:
        notification_id = await record_notification(
            conn, user_id=user_id, kind=kind, payload=payload, dedupe_key=uuid.uuid4().hex
        )
    assert notification_id is not None
    return notification_id


@dataclass(frozen=True)
class Comment:
    text: str
    arrived: float


@dataclass(frozen=True)
class Event:
    id: str
    event: str
    data: str
    arrived: float

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass(frozen=True)
class Retry:
    """A `retry:` field: how long EventSource waits before it reconnects."""

    milliseconds: int


@dataclass(frozen=True)
class StreamEnded:
    """The server finished the response (EventSource would reconnect with Last-Event-ID)."""


SseItem = Comment | Event | Retry | StreamEnded


async def sse_items(response: httpx.Response) -> AsyncIterator[SseItem]:
    """Parse a text/event-stream body the way EventSource does (only the fields we send)."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line.startswith(":"):
            yield Comment(line[1:].strip(), time.monotonic())
        elif line:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        elif fields:
            if "retry" in fields:
                yield Retry(int(fields["retry"]))
            # EventSource dispatches no event for a block without data.
            if "data" in fields:
                yield Event(
                    fields.get("id", ""),
                    fields.get("event", ""),
                    fields["data"],
                    time.monotonic(),
                )
            fields = {}


@dataclass
class OpenStream:
    """A stream read in the background into a queue, so tests can await its next item."""

    response: httpx.Response
    items: asyncio.Queue[SseItem] = field(default_factory=asyncio.Queue)
    reader: asyncio.Task[None] | None = None
    retry: Retry | None = None

    async def stop_reading(self) -> None:
        """Leave the socket undrained, as a client that hangs does."""
        if self.reader is not None:
            self.reader.cancel()
            await asyncio.gather(self.reader, return_exceptions=True)

    async def next_item(self, within: float = 5.0) -> SseItem:
        async with asyncio.timeout(within):
            return await self.items.get()

    async def next_event(self, within: float = 5.0) -> Event:
        async with asyncio.timeout(within):
            while True:
                item = await self.items.get()
                if isinstance(item, Event):
                    return item

    async def events_until_ping(self, within: float = 5.0) -> list[Event]:
        """Every event before the next heartbeat: what the stream sent in one quiet interval."""
        events: list[Event] = []
        async with asyncio.timeout(within):
            while isinstance(item := await self.items.get(), Event):
                events.append(item)
        return events


@asynccontextmanager
async def open_stream(
    base_url: str, token: str, last_event_id: int | None = None, **client_options: Any
) -> AsyncIterator[OpenStream]:
    headers = {"Authorization": f"Bearer {token}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=None, **client_options) as http,
        http.stream("GET", STREAM_PATH, headers=headers) as response,
    ):
        assert response.status_code == 200, (response.status_code, await response.aread())
        stream = OpenStream(response)

        async def pump() -> None:
            async for item in sse_items(response):
                if isinstance(item, Retry):
                    stream.retry = item
                else:
                    stream.items.put_nowait(item)
            stream.items.put_nowait(StreamEnded())

        stream.reader = asyncio.create_task(pump())
        try:
            yield stream
        finally:
            await stream.stop_reading()


async def read_resuming(base_url: str, token: str, count: int) -> list[int]:
    """Read `count` event ids from the start, as EventSource does: whenever the server ends
    the stream, reconnect with the last id received as Last-Event-ID."""
    received: list[int] = []
    while len(received) < count:
        async with open_stream(base_url, token, received[-1] if received else 0) as stream:
            while len(received) < count:
                item = await stream.items.get()
                if isinstance(item, StreamEnded):
                    break
                if isinstance(item, Event):
                    received.append(int(item.id))
    return received


@asynccontextmanager
async def api_server(settings: Settings) -> AsyncIterator[str]:
    """The app under a real uvicorn on a free loopback port, in this event loop."""
    port = free_loopback_port()
    config = server_config(create_app(settings), settings, host="127.0.0.1", port=port)
    config.timeout_graceful_shutdown = 1
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(15):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def api_environment(settings: Settings, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": resolve_database_url(settings),
        "DATA_DIR": str(settings.data_dir),
        "API_HOST": "127.0.0.1",
        "API_PORT": str(port),
        "JWT_SECRET": settings.jwt_secret.get_secret_value(),
        "SSE_HEARTBEAT_SECONDS": str(settings.sse_heartbeat_seconds),
        "LOG_LEVEL": "WARNING",
    }


@asynccontextmanager
async def api_process(
    settings: Settings,
    log_path: Path,
    extra_env: Mapping[str, str] | None = None,
    port: int | None = None,
) -> AsyncIterator[str]:
    """`learning-jobs api` as its own process; yields its base URL once /healthz answers 200.
    A `port` given again serves a restarted API at the same URL."""
    port = port or free_loopback_port()
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "learning_platform",
            "api",
            cwd=PROJECT_ROOT,
            env={**api_environment(settings, port), **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        await wait_until_healthy(base_url, process)
        yield base_url
    finally:
        process.terminate()
        async with asyncio.timeout(10):
            await process.wait()


async def wait_until_healthy(base_url: str, process: asyncio.subprocess.Process) -> None:
    # Another process: there is no event to await, so poll with a deadline.
    async with asyncio.timeout(30), httpx.AsyncClient(base_url=base_url) as http:
        while True:
            assert process.returncode is None, "api.py exited during start; see its log"
            try:
                if (await http.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)


async def metric_value(base_url: str, sample: str) -> float:
    """One sample line of /metrics, e.g. 'sse_streams_open' or 'x_total{reason="y"}'."""
    async with httpx.AsyncClient(base_url=base_url) as http:
        text = (await http.get("/metrics")).text
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == sample:
            return float(value)
    return 0.0


async def wait_for_metric(base_url: str, sample: str, expected: float) -> None:
    """Poll /metrics until `sample` equals `expected` (server-side effects have no event)."""
    async with asyncio.timeout(10):
        while True:
            if await metric_value(base_url, sample) == expected:
                return
            await asyncio.sleep(0.05)
