"""Group commit: rows that many coroutines of one process finish at about the same time are
written in one transaction by one statement, and each writer resumes once its group committed.

A connection checkout, BEGIN, the statement and COMMIT cost the same CPU for one row as for
fifty (bench/ai_processing: a page summary per transaction was the worker's biggest SQL cost).
`GroupCommit.write(row)` queues the row and waits; one writer task takes what is queued after
a short window (or as soon as a group is full), writes it with `write_group(conn, rows)` in
one transaction, and resumes every waiter of the group: with None once it committed, or with
the exception writing it raised. A waiter that is cancelled leaves its row in the group (a
finished row is still worth writing) and does not disturb the others. `aclose()` writes what
is queued and ends the writer task; the owner calls it when the process stops using it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from learning_platform.core.errors import ServiceError

T = TypeVar("T")

# How long the writer waits after the first row of a group for others to join it, and the
# most rows one statement takes (the next group starts at once with the rest).
GROUP_WINDOW_SECONDS = 0.02
MAX_GROUP_ROWS = 64


class GroupCommitStoppedError(ServiceError, RuntimeError):
    """The writer was closed (or its task ended) before the row could be written."""


class GroupCommit(Generic[T]):
    def __init__(
        self,
        engine: AsyncEngine,
        write_group: Callable[[AsyncConnection, list[T]], Awaitable[None]],
        *,
        name: str,
        window_seconds: float = GROUP_WINDOW_SECONDS,
        max_rows: int = MAX_GROUP_ROWS,
    ) -> None:
        if max_rows < 1 or window_seconds < 0:
            raise ValueError("a group takes at least one row, after a window of zero or more")
        self._engine = engine
        self._write_group = write_group
        self._name = name
        self._window = window_seconds
        self._max_rows = max_rows
        self._queued: list[tuple[T, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def running(self) -> bool:
        """Whether the writer task exists and has not ended (it starts with the first row)."""
        return self._task is not None and not self._task.done()

    async def write(self, row: T) -> None:
        """Return once `row` is committed (with the rows grouped with it); raise what writing
        its group raised."""
        if self._closed:
            raise GroupCommitStoppedError(f"{self._name}: the group writer is closed")
        done = asyncio.get_running_loop().create_future()
        self._queued.append((row, done))
        self._wake.set()
        if self._task is None or self._task.done():  # the first row, or after a cancellation
            self._task = asyncio.create_task(self._run(), name=f"group commit: {self._name}")
        await done

    async def aclose(self) -> None:
        """Write what is queued, then end the writer task; later writes are refused."""
        self._closed = True
        self._wake.set()
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _run(self) -> None:
        try:
            while True:
                await self._wake.wait()
                if not self._queued:
                    if self._closed:
                        return
                    self._wake.clear()
                    continue
                if len(self._queued) < self._max_rows and not self._closed and self._window:
                    await asyncio.sleep(self._window)
                group = self._queued[: self._max_rows]
                del self._queued[: len(group)]
                await self._commit(group)
        finally:
            # Only on cancellation or a bug: nobody would resume these waiters otherwise.
            self._fail(self._queued, GroupCommitStoppedError(f"{self._name}: writer ended"))
            self._queued.clear()

    async def _commit(self, group: list[tuple[T, asyncio.Future[None]]]) -> None:
        try:
            async with self._engine.begin() as conn:
                await self._write_group(conn, [row for row, _ in group])
        except Exception as exc:
            self._fail(group, exc)
        except BaseException:
            self._fail(group, GroupCommitStoppedError(f"{self._name}: writer ended"))
            raise
        else:
            for _, done in group:
                if not done.done():  # a cancelled waiter's future is done already
                    done.set_result(None)

    @staticmethod
    def _fail(group: list[tuple[T, asyncio.Future[None]]], exc: BaseException) -> None:
        for _, done in group:
            if not done.done():
                done.set_exception(exc)
