"""The uvicorn configuration of the API, bounded against clients that hold connections.

uvicorn bounds the request head's size (`h11_max_incomplete_event_size`) and idle keep-alive
connections (`timeout_keep_alive`), but has no deadline for receiving a request: its keep-alive
timer is cancelled by every byte that arrives, so a client that sends half its headers, or a
byte every few seconds, holds its connection (and a `limit_concurrency` slot) forever. Neither
hypercorn (`keep_alive_timeout` is re-armed per read; `read_timeout` is per read too and would
close SSE streams, whose clients send nothing) nor a switch to granian (Rust; its server loop
replaces uvicorn's, which sse-starlette's shutdown handling watches) is a better fit, so
`DeadlineH11Protocol` adds the one missing timer to uvicorn's own h11 protocol: the request
line, headers and body must arrive within `API_REQUEST_READ_TIMEOUT_SECONDS` of the connection
opening (or of the previous response ending, on a kept-alive connection).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from learning_platform.core.settings import Settings

log = logging.getLogger(__name__)

# Streams end on shutdown by themselves (sse-starlette watches uvicorn's exit flag).
SHUTDOWN_GRACE_SECONDS = 5
# Connections beyond the stream limit, so /healthz and /metrics answer at the stream limit.
_CONNECTIONS_BEYOND_STREAMS = 64


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for receiving each whole request."""

    read_timeout: ClassVar[float] = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._request_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_deadline()

    def handle_events(self) -> None:
        super().handle_events()
        # DONE: the whole request (head and body) has arrived; the app's response may stream on.
        if self.conn.their_state is h11.DONE:
            self._disarm_deadline()

    def on_response_complete(self) -> None:
        # Before super(): it may go straight on to a pipelined request and disarm again.
        self._arm_deadline()
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_deadline()
        super().connection_lost(exc)

    def _arm_deadline(self) -> None:
        self._disarm_deadline()
        self._request_deadline = self.loop.call_later(self.read_timeout, self._deadline_passed)

    def _disarm_deadline(self) -> None:
        if self._request_deadline is not None:
            self._request_deadline.cancel()
            self._request_deadline = None

    def _deadline_passed(self) -> None:
        self._request_deadline = None
        if not self.transport.is_closing():
            log.info(
                "closed a connection that did not send its request in time",
                extra={"timeout_seconds": self.read_timeout},
            )
            self.transport.close()


def server_config(app: Any, settings: Settings, *, host: str, port: int) -> uvicorn.Config:
    """The one uvicorn configuration of the API, for `learning-jobs api` and for the tests alike."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        # A subclass per configuration: uvicorn builds the protocol from the class alone.
        http=type(
            "DeadlineH11Protocol",
            (DeadlineH11Protocol,),
            {"read_timeout": settings.api_request_read_timeout_seconds},
        ),
        log_config=None,
        # The app logs each request itself, without query strings (see edge.py).
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        timeout_keep_alive=settings.api_keep_alive_seconds,  # type: ignore[arg-type]
        h11_max_incomplete_event_size=settings.api_max_header_bytes,
        limit_concurrency=settings.sse_max_connections + _CONNECTIONS_BEYOND_STREAMS,
    )
