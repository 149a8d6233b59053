"""Activities of the browsing-session jobs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from contracts.browsing_sessions import (
    ACTIVE_SESSIONS_GAUGE,
    FAIL_STALE_SESSIONS,
    RECORD_ACTIVE_SESSIONS,
    FailStaleSessionsParams,
)
from learning_platform import browsing_sessions
from learning_platform.browsing_sessions import SweepPosition
from learning_platform.job_gauges import store_gauge
from learning_platform.models import ACTIVE_STATUSES

# Before any timestamp: a sweep's starting position.
BEGINNING = datetime(1, 1, 1, tzinfo=UTC)


def _encode(position: SweepPosition) -> list[Any]:
    return [position.updated_at.isoformat(), position.id]


def _resume_from(details: Sequence[Any]) -> tuple[int, dict[str, SweepPosition]]:
    if len(details) < 2:
        return 0, {}
    total, encoded = details[0], details[1]
    positions = {
        status: SweepPosition(status, datetime.fromisoformat(at), int(row_id))
        for status, (at, row_id) in encoded.items()
    }
    return int(total), positions


class BrowsingSessionActivities:
    def __init__(self, engine: AsyncEngine, batch_size: int) -> None:
        self._engine = engine
        self._batch_size = batch_size

    @activity.defn(name=FAIL_STALE_SESSIONS)
    async def fail_stale_sessions(self, params: FailStaleSessionsParams) -> int:
        """Batch after batch, each its own short transaction, per active status.

        Idempotent: a retried or repeated run finds the rows already failed and changes nothing.
        The heartbeat carries the count and position, so a retry continues where the last
        attempt stopped instead of walking the index from the start again.
        """
        total, positions = _resume_from(activity.info().heartbeat_details)
        for status in ACTIVE_STATUSES:
            position = positions.get(status, SweepPosition(status, BEGINNING, 0))
            while True:
                async with self._engine.begin() as conn:
                    batch = await browsing_sessions.fail_stale_batch(
                        conn,
                        after=position,
                        cutoff=params.cutoff,
                        reason=params.reason,
                        limit=self._batch_size,
                    )
                total += batch.failed
                position = positions[status] = batch.position
                activity.heartbeat(total, {s: _encode(p) for s, p in positions.items()})
                if batch.read < self._batch_size:
                    break
        return total

    @activity.defn(name=RECORD_ACTIVE_SESSIONS)
    async def record_active_sessions(self) -> int:
        async with self._engine.begin() as conn:
            count = await browsing_sessions.count_active(conn)
            await store_gauge(conn, ACTIVE_SESSIONS_GAUGE, count)
        return count
