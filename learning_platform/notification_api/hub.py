"""One LISTEN connection per API process, fanning notifications out to the open streams.

A NOTIFY carries only {"id", "user_id", "first_id"}: one per user and INSERT statement, the
user's lowest (`first_id`) and highest (`id`) id in it (migration 0010; a payload without
`first_id`, as 0001's per-row trigger sent, is the one row `id`). Every id of that user between
the two is that statement's: the user's lock is held from before the first is drawn until
commit. The hub keeps the ranges whose user has a stream open here, reads their rows in one
query per wake-up (a burst becomes one batch) and offers each row to that user's subscriptions.
Offering never waits: a subscription whose queue is full is closed (`Subscription.overflowed`)
so one slow client never holds up the others.

NOTIFYs sent while the LISTEN connection is down are lost, so each time LISTEN is
re-established every subscription is asked to catch up from the table (rows above the last id
it sent); LISTEN is active before that request, so a row commits either before the catch-up
query reads the table or after LISTEN, and is then notified.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Final

import asyncpg

from learning_platform.notification_api.metrics import ApiMetrics
from learning_platform.notification_api.store import (
    DATABASE_ERRORS,
    NotifiedRange,
    StoredNotification,
    notifications_in_ranges,
)

log = logging.getLogger(__name__)

CHANNEL = "notifications"
# A half-open TCP connection (Postgres host gone without a FIN) is only found by using it.
_LISTENER_PROBE_SECONDS = 10.0
_PROBE_TIMEOUT_SECONDS = 5.0


class CatchUp:
    """Queue item: the stream must read the table for rows it may have missed."""


CATCH_UP: Final = CatchUp()


class Subscription:
    """One stream's inbox: notified rows and catch-up requests, bounded."""

    def __init__(self, user_id: int, queue_size: int) -> None:
        self.user_id = user_id
        self.overflowed = False
        self.on_overflow: Callable[[], None] = lambda: None
        self._queue: asyncio.Queue[StoredNotification | CatchUp] = asyncio.Queue(queue_size)
        self._catch_up_queued = False

    def offer(self, item: StoredNotification | CatchUp) -> None:
        if self.overflowed:
            return
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.overflowed = True
            self.on_overflow()

    def request_catch_up(self) -> None:
        if not self._catch_up_queued:
            self._catch_up_queued = True
            self.offer(CATCH_UP)

    async def next(self) -> StoredNotification | CatchUp:
        item = await self._queue.get()
        if item is CATCH_UP:
            self._catch_up_queued = False
        return item


class NotificationHub:
    def __init__(
        self,
        dsn: str,
        pool: asyncpg.Pool,
        metrics: ApiMetrics,
        *,
        queue_size: int,
        backoff_seconds: float,
        backoff_max_seconds: float,
    ) -> None:
        self._dsn = dsn
        self._pool = pool
        self._metrics = metrics
        self._queue_size = queue_size
        self._backoff = backoff_seconds
        self._backoff_max = backoff_max_seconds
        self._subscriptions: defaultdict[int, set[Subscription]] = defaultdict(set)
        self._open = 0
        self._notified: list[NotifiedRange] = []  # not yet fetched
        self._wake = asyncio.Event()
        self._listening = False
        self._first_listen = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        metrics.watch_listener(lambda: self._listening)

    @property
    def listening(self) -> bool:
        return self._listening

    @property
    def open_streams(self) -> int:
        return self._open

    def streams_of(self, user_id: int) -> int:
        return len(self._subscriptions.get(user_id, ()))

    async def start(self, first_listen_timeout: float = 10.0) -> None:
        """Start listening; wait (bounded) for the first LISTEN so a fresh process misses
        nothing, but serve anyway if the database is away (/healthz says so)."""
        self._tasks = [
            asyncio.create_task(self._listen_forever(), name="notification-listener"),
            asyncio.create_task(self._deliver_forever(), name="notification-delivery"),
        ]
        try:
            await asyncio.wait_for(self._first_listen.wait(), first_listen_timeout)
        except TimeoutError:
            log.error("notification listener not connected yet; retrying in the background")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def subscribe(self, user_id: int) -> Subscription:
        subscription = Subscription(user_id, self._queue_size)
        self._subscriptions[user_id].add(subscription)
        self._open += 1
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscriptions = self._subscriptions.get(subscription.user_id)
        if subscriptions is None or subscription not in subscriptions:
            return
        subscriptions.discard(subscription)
        self._open -= 1
        if not subscriptions:
            del self._subscriptions[subscription.user_id]

    async def _listen_forever(self) -> None:
        delay = self._backoff
        while True:
            try:
                await self._listen_until_lost()
                delay = self._backoff
            except DATABASE_ERRORS as exc:
                log.warning(
                    "notification listener connection failed",
                    extra={"error": repr(exc), "retry_in_seconds": delay},
                )
            except Exception:
                # This loop is the process's only way to hear of notifications: never let it die.
                log.exception("notification listener failed unexpectedly; reconnecting")
            self._listening = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._backoff_max)

    async def _listen_until_lost(self) -> None:
        connection = await asyncpg.connect(self._dsn, timeout=_PROBE_TIMEOUT_SECONDS)
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _: lost.set())
        try:
            await connection.add_listener(CHANNEL, self._on_notify)
            await self._on_listening()
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), _LISTENER_PROBE_SECONDS)
                if not lost.is_set():
                    await connection.fetchval("SELECT 1", timeout=_PROBE_TIMEOUT_SECONDS)
            log.warning("notification listener connection lost; reconnecting")
        finally:
            self._listening = False
            connection.terminate()

    async def _on_listening(self) -> None:
        reconnect = self._first_listen.is_set()
        if reconnect:
            # The server may have restarted: pooled connections may be dead without knowing it.
            await self._pool.expire_connections()
        self._listening = True
        self._first_listen.set()
        if reconnect:
            self._metrics.listener_reconnects.inc()
            log.info("notification listener reconnected; open streams catch up from the table")
        for subscriptions in self._subscriptions.values():
            for subscription in subscriptions:
                subscription.request_catch_up()

    def _on_notify(self, _connection: object, _pid: int, _channel: str, payload: object) -> None:
        notified = parse_notify(payload)
        if notified is None:
            log.warning("ignoring malformed notification NOTIFY", extra={"payload": payload})
            return
        if notified.user_id in self._subscriptions:
            self._notified.append(notified)
            self._wake.set()

    async def _deliver_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._notified = self._notified, []
            try:
                with self._metrics.fetch_seconds.time():
                    rows = await notifications_in_ranges(self._pool, batch)
            except Exception as exc:
                # Never let delivery die; the streams re-read what this batch would have given.
                log.warning("could not read notified rows", extra={"error": repr(exc)})
                self._catch_up_users({notified.user_id for notified in batch})
                continue
            self._metrics.notifications_fetched.inc(len(rows))
            for row in rows:
                for subscription in tuple(self._subscriptions.get(row.user_id, ())):
                    subscription.offer(row)

    def _catch_up_users(self, user_ids: set[int]) -> None:
        for user_id in user_ids:
            for subscription in self._subscriptions.get(user_id, ()):
                subscription.request_catch_up()


def parse_notify(payload: object) -> NotifiedRange | None:
    """The range a NOTIFY payload announces; None if it is not one."""
    try:
        message = json.loads(str(payload))
        last_id, user_id = int(message["id"]), int(message["user_id"])
        first_id = int(message.get("first_id", last_id))
    except (ValueError, KeyError, TypeError):
        return None
    if first_id > last_id:
        return None
    return NotifiedRange(user_id, first_id, last_id)
