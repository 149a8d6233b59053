"""A web server on loopback written to hurt crawlers: raw asyncio sockets in a process of its
own, so it can misbehave at the byte level (slow or huge headers, bodies a byte a second or
without end, stacked compression, bogus chunk sizes, endless redirects).

A test registers a `Reply` (the head exactly as sent, the body, how to pace it) and gets the URL
that serves it.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import itertools
import multiprocessing
import struct
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection

from learning_platform.core.metrics import free_loopback_port

_REQUEST_HEAD_LIMIT = 64 * 1024


@dataclass(frozen=True)
class Reply:
    head: bytes
    """Status line and headers with their final blank line, sent byte for byte as given."""
    body: bytes = b""
    piece_bytes: int = 64 * 1024
    """The body is written in pieces of this size..."""
    pause_seconds: float = 0.0
    """...with this pause after each (and after each byte of the head when `slow_head`)."""
    slow_head: bool = False
    endless: bool = False
    """Send `body` again and again until the client goes away."""
    pause_after_head: float = 0.0
    """A pause between the head and the body, so they reach the client in separate reads."""


def head(status: str = "200 OK", *headers: str, content_type: str = "text/html") -> bytes:
    """A well-formed response head; `Connection: close` since every reply ends the connection."""
    lines = [f"HTTP/1.1 {status}", f"Content-Type: {content_type}", "Connection: close", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def html_reply(html: bytes, *headers: str, content_type: str = "text/html") -> Reply:
    return Reply(
        head("200 OK", f"Content-Length: {len(html)}", *headers, content_type=content_type), html
    )


def readable_html(words: int = 60) -> bytes:
    sentence = "Spaced repetition lets students remember what they read for longer. "
    paragraphs = "".join(f"<p>{sentence * 3}</p>" for _ in range(max(1, words // 30)))
    return (
        "<html><head><title>Fine page</title></head>"
        f"<body><article>{paragraphs}</article></body></html>"
    ).encode()


@functools.cache
def zeros_gzip(decoded_bytes: int) -> bytes:
    """A single gzip member that inflates to `decoded_bytes` zero bytes (a whole number of MiB),
    built from one full-flushed deflate block repeated, so even a GiB bomb takes well under a
    second to make."""
    block = bytes(1 << 20)
    count, rest = divmod(decoded_bytes, len(block))
    assert rest == 0, "a whole number of MiB"
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    first = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    repeated = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(block, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = struct.pack("<II", crc, decoded_bytes & 0xFFFF_FFFF)
    return b"".join([header, first, repeated * (count - 1), deflate.flush(), trailer])


def stacked_gzip(decoded_bytes: int, layers: int) -> bytes:
    """`zeros_gzip` compressed `layers - 1` more times: ~1 KiB for a GiB."""
    data = zeros_gzip(decoded_bytes)
    for _ in range(layers - 1):
        data = gzip.compress(data, 9)
    return data


class HostileServer:
    """The server runs in a process of its own, so a test's tracemalloc figures hold the
    crawler's allocations only; replies reach it over a pipe."""

    def __init__(self) -> None:
        self._names = itertools.count()
        port = free_loopback_port()
        self.base = f"http://127.0.0.1:{port}"
        context = multiprocessing.get_context("spawn")  # no fork of a process with threads
        self._control, child = context.Pipe()
        self._lock = threading.Lock()
        self._process = context.Process(target=_run_server, args=(port, child), daemon=True)

    def reserve(self) -> str:
        """A URL of this server that answers 404 until `put` gives it a reply."""
        return f"{self.base}/r{next(self._names)}"

    def put(self, url: str, reply: Reply) -> None:
        with self._lock:
            self._control.send((url.removeprefix(self.base), reply))
            self._control.recv()

    def add(self, reply: Reply) -> str:
        """The URL (on this server) that answers with `reply`."""
        url = self.reserve()
        self.put(url, reply)
        return url

    def start(self) -> None:
        self._process.start()
        if not self._control.poll(30) or self._control.recv() != "ready":
            raise RuntimeError("hostile server did not start")

    def stop(self) -> None:
        with self._lock:
            self._control.send(None)
        self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


def _run_server(port: int, control: Connection) -> None:
    asyncio.run(_serve(port, control))


async def _serve(port: int, control: Connection) -> None:
    loop = asyncio.get_running_loop()
    replies: dict[str, Reply] = {}
    stop = asyncio.Event()
    handlers: set[asyncio.Task[None]] = set()

    def take_orders() -> None:
        while (order := control.recv()) is not None:
            path, reply = order
            replies[path] = reply
            control.send("ok")
        loop.call_soon_threadsafe(stop.set)

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        # A small send buffer: an endless body waits for the client instead of piling up.
        writer.transport.set_write_buffer_limits(high=16 * 1024)
        try:
            await _answer(replies, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client gave up or sent nonsense: both are its right here
        finally:
            handlers.discard(task)
            writer.close()

    server = await asyncio.start_server(on_connection, "127.0.0.1", port, limit=_REQUEST_HEAD_LIMIT)
    threading.Thread(target=take_orders, daemon=True).start()
    control.send("ready")
    async with server:
        await stop.wait()
        for task in list(handlers):
            task.cancel()


async def _answer(
    replies: dict[str, Reply], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    request = await reader.readuntil(b"\r\n\r\n")
    path = request.split(b" ", 2)[1].decode("latin-1").split("?")[0]
    reply = replies.get(path)
    if reply is None:
        writer.write(head("404 Not Found", "Content-Length: 0"))
        await writer.drain()
        return
    if reply.slow_head:
        for byte in reply.head:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(reply.pause_seconds)
    else:
        writer.write(reply.head)
    if reply.pause_after_head:
        await writer.drain()
        await asyncio.sleep(reply.pause_after_head)
    body = memoryview(reply.body)
    while True:
        for start in range(0, len(body), reply.piece_bytes):
            writer.write(body[start : start + reply.piece_bytes])
            await writer.drain()
            if reply.pause_seconds:
                await asyncio.sleep(reply.pause_seconds)
        if not reply.endless:
            break
        await asyncio.sleep(0)


@contextmanager
def hostile_server() -> Iterator[HostileServer]:
    server = HostileServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
