"""Run an ASGI app with uvicorn on 127.0.0.1 (free port) in a background thread."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from learning_platform.core.metrics import free_loopback_port


@contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Serve `app` until the block exits; yields its base URL (http://127.0.0.1:PORT)."""
    port = free_loopback_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=1,
        # Many concurrent keep-alive clients (benchmarks) must not be refused.
        limit_concurrency=None,
        backlog=2048,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    if not server.started:
        raise RuntimeError("loopback server did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)


@contextmanager
def refused_ports(count: int) -> Iterator[list[int]]:
    """Loopback ports that refuse connections for as long as this lasts: each is bound and not
    listening, so no other process (a parallel test's server) can take it meanwhile, as it could
    a port that was only free a moment ago."""
    held = [socket.socket() for _ in range(count)]
    try:
        for sock in held:
            sock.bind(("127.0.0.1", 0))
        yield [int(sock.getsockname()[1]) for sock in held]
    finally:
        for sock in held:
            sock.close()
