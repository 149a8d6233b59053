"""What every request passes before routing: a bounded header count and one access-log line.

The access log is the app's own (uvicorn's is off): it names the route, never the query string
or an unknown path (either may carry a token a client put in the URL) and never a header value.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from learning_platform.notification_api.refusals import Refusal

log = logging.getLogger("api.access")


class Edge:
    def __init__(
        self, app: ASGIApp, *, routes: Collection[str], max_headers: int, max_header_bytes: int
    ) -> None:
        self._app = app
        self._routes = frozenset(routes)
        self._max_headers = max_headers
        self._max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.monotonic()
        path = scope["path"] if scope["path"] in self._routes else "(unknown path)"

        async def logged_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Logged when the answer starts: a stream's line appears when it opens.
                client = scope.get("client")
                log.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "path": path,
                        "status": message["status"],
                        "client": client[0] if client else None,
                        "ms": round((time.monotonic() - started) * 1000, 1),
                    },
                )
            await send(message)

        refusal = self._oversized(scope["headers"])
        if refusal is not None:
            await refusal.response()(scope, receive, logged_send)
            return
        await self._app(scope, receive, logged_send)

    def _oversized(self, headers: list[tuple[bytes, bytes]]) -> Refusal | None:
        # h11 bounds only a head that is still incomplete at its size limit; one that arrives
        # whole in a single read is checked here.
        size = sum(len(name) + len(value) for name, value in headers)
        if len(headers) > self._max_headers or size > self._max_header_bytes:
            return Refusal(
                431,
                "headers_too_large",
                f"send at most {self._max_headers} request headers "
                f"and {self._max_header_bytes} bytes of them",
            )
        return None
