"""One client's notification stream: the backlog after Last-Event-ID, then live rows.

Why "every id above the last one sent" is exact: the table's trigger (migrations 0001, 0010)
serialises a user's notification writers from before the id is drawn until commit, so one
user's ids become visible in id order. A stream therefore only needs a cursor (the last id it
sent): live rows at or below it are duplicates (the backlog read already sent them) and are
dropped; a catch-up query for `id > cursor` returns exactly what the stream has not sent. The
client's Last-Event-ID is that cursor, so a resumed stream continues without gaps or
duplicates. The subscription is made before the backlog is read, so a row committed meanwhile
is either in the backlog or in the subscription's queue (or both, deduplicated by the cursor).
A client without Last-Event-ID starts at the user's latest id, read before the response starts:
whatever commits after the client sees "200 OK" is delivered.

A writer that inserts notifications without that lock (the BEFORE trigger disabled alone) can
commit a lower id after a higher one. Such a late row still reaches open streams through its
NOTIFY: it is sent if this stream has not sent it already (a bounded set of recent ids tells),
and it is sent without an `id:` field, so the client's Last-Event-ID stays the highest id it
has and a resume neither repeats nor skips what it already got. Only a late row committed while
the client is disconnected (or while LISTEN is down) is not streamed.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator

import anyio
import asyncpg
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.types import Message, Receive, Scope, Send

from learning_platform.notification_api.hub import CatchUp, NotificationHub, Subscription
from learning_platform.notification_api.metrics import ApiMetrics
from learning_platform.notification_api.store import (
    DATABASE_ERRORS,
    StoredNotification,
    notifications_after,
)

log = logging.getLogger(__name__)

BACKLOG_PAGE = 500


class NotificationStream:
    def __init__(
        self,
        pool: asyncpg.Pool,
        subscription: Subscription,
        metrics: ApiMetrics,
        cursor: int,
        queue_size: int,
        *,
        retry_milliseconds: int,
    ) -> None:
        self._retry_milliseconds = retry_milliseconds
        self._pool = pool
        self._subscription = subscription
        self._metrics = metrics
        self._cursor = cursor  # the highest id the client has
        # A live copy of a row the backlog already sent is at most two queues behind it.
        self._recent = RecentIds(2 * queue_size + 16)

    async def events(self) -> AsyncIterator[ServerSentEvent]:
        # How long EventSource waits before it reconnects after the stream ends.
        yield ServerSentEvent(retry=self._retry_milliseconds)
        try:
            async for event in self._missed():
                yield event
            while True:
                item = await self._subscription.next()
                if isinstance(item, CatchUp):
                    async for event in self._missed():
                        yield event
                elif item.id > self._cursor:
                    yield self._sent(item)
                elif item.id not in self._recent:
                    yield self._sent_late(item)
        except DATABASE_ERRORS as exc:
            # Ending the stream is the honest answer: the client resumes with Last-Event-ID.
            log.warning(
                "notification stream ended: database unavailable", extra={"error": repr(exc)}
            )
            self._metrics.streams_dropped.labels("database_error").inc()

    async def _missed(self) -> AsyncIterator[ServerSentEvent]:
        while True:
            page = await notifications_after(
                self._pool, self._subscription.user_id, self._cursor, BACKLOG_PAGE
            )
            for row in page:
                yield self._sent(row)
            if len(page) < BACKLOG_PAGE:
                return

    def _sent(self, row: StoredNotification) -> ServerSentEvent:
        # Counted here, before the write, because the generator may not be resumed after it.
        self._cursor = row.id
        self._recent.add(row.id)
        self._metrics.events_delivered.inc()
        return ServerSentEvent(data=row.data, event=row.kind, id=str(row.id))

    def _sent_late(self, row: StoredNotification) -> ServerSentEvent:
        self._recent.add(row.id)
        self._metrics.events_delivered.inc()
        self._metrics.late_events.inc()
        return ServerSentEvent(data=row.data, event=row.kind)


class RecentIds:
    """The last `capacity` ids a stream sent."""

    def __init__(self, capacity: int) -> None:
        self._order: deque[int] = deque()
        self._ids: set[int] = set()
        self._capacity = capacity

    def add(self, notification_id: int) -> None:
        self._order.append(notification_id)
        self._ids.add(notification_id)
        if len(self._order) > self._capacity:
            self._ids.discard(self._order.popleft())

    def __contains__(self, notification_id: int) -> bool:
        return notification_id in self._ids


class ResponseEnding:
    """Tracks a response's messages so it can be completed if the stream stopped short.

    On server shutdown sse-starlette cancels its stream without the final empty body; uvicorn
    then logs "ASGI callable returned without completing response" at error level for every
    client still connected (the live page open during Ctrl-C in `make dev`, say)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._started = False
        self._completed = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._started = True
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self._completed = True
        await self._send(message)

    async def complete(self) -> None:
        if self._started and not self._completed:
            await self.send({"type": "http.response.body", "body": b"", "more_body": False})


class NotificationStreamResponse(EventSourceResponse):
    """The SSE response, closable from the hub when its queue overflows."""

    def __init__(
        self,
        stream: NotificationStream,
        subscription: Subscription,
        hub: NotificationHub,
        metrics: ApiMetrics,
        *,
        heartbeat_seconds: float,
        send_timeout_seconds: float,
    ) -> None:
        super().__init__(stream.events(), ping=heartbeat_seconds, send_timeout=send_timeout_seconds)
        self._subscription = subscription
        self._hub = hub
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._metrics.open_streams.inc()
        ending = ResponseEnding(send)
        try:
            with anyio.CancelScope() as cancel_scope:
                self._subscription.on_overflow = cancel_scope.cancel
                await super().__call__(scope, receive, ending.send)
            await ending.complete()
            if cancel_scope.cancelled_caught:
                log.warning(
                    "closed a stream that fell behind; the client can resume with Last-Event-ID",
                    extra={"user_id": self._subscription.user_id},
                )
                self._metrics.streams_dropped.labels("queue_overflow").inc()
        except SendTimeoutError:
            log.warning(
                "closed a stream whose client stopped reading",
                extra={"user_id": self._subscription.user_id},
            )
            self._metrics.streams_dropped.labels("send_timeout").inc()
        finally:
            self._hub.unsubscribe(self._subscription)
            self._metrics.open_streams.dec()
