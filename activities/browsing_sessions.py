"""Activities of the browsing-session jobs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from activities.checkpoints import checkpoint, resumed_checkpoint
from activities.interfaces import implements
from learning_platform.core.checkpoints import Checkpoint
from learning_platform.core.gauges import store_gauge
from learning_platform.jobs.browsing_sessions import contracts
from learning_platform.jobs.browsing_sessions import queries as browsing_sessions
from learning_platform.jobs.browsing_sessions.contracts import (
    ACTIVE_SESSIONS_GAUGE,
    FailStaleSessionsParams,
)
from learning_platform.jobs.browsing_sessions.models import ACTIVE_STATUSES
from learning_platform.jobs.browsing_sessions.queries import SweepPosition

# Before any timestamp: a sweep's starting position.
BEGINNING = datetime(1, 1, 1, tzinfo=UTC)


def _encode(position: SweepPosition) -> list[Any]:
    return [position.updated_at.isoformat(), position.id]


def _resume_from(resumed: Checkpoint | None) -> tuple[int, dict[str, SweepPosition]]:
    if resumed is None:
        return 0, {}
    positions = {
        status: SweepPosition(status, datetime.fromisoformat(at), int(row_id))
        for status, (at, row_id) in resumed.position.items()
    }
    return resumed.total, positions


class BrowsingSessionActivities:
    def __init__(self, engine: AsyncEngine, batch_size: int) -> None:
        self._engine = engine
        self._batch_size = batch_size

    @implements(contracts.fail_stale_sessions)
    async def fail_stale_sessions(self, params: FailStaleSessionsParams) -> int:
        """Batch after batch, each its own short transaction, per active status.

        Idempotent: a retried or repeated run finds the rows already failed and changes nothing.
        Each batch commits the count and position with its changes, so a retry continues after
        the last committed batch (instead of walking the index from the start) with its count.
        """
        total, positions = _resume_from(await resumed_checkpoint(self._engine))
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
                    encoded = {s: _encode(p) for s, p in positions.items()}
                    await checkpoint(conn, Checkpoint(total, encoded))
                if batch.read < self._batch_size:
                    break
        return total

    @implements(contracts.record_active_sessions)
    async def record_active_sessions(self) -> int:
        async with self._engine.begin() as conn:
            count = await browsing_sessions.count_active(conn)
            await store_gauge(conn, ACTIVE_SESSIONS_GAUGE, count)
        return count
