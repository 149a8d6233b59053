"""Activities of the retention job."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from activities.checkpoints import checkpoint, resumed_checkpoint
from activities.interfaces import implements
from learning_platform.core.checkpoints import Checkpoint
from learning_platform.jobs.retention import contracts
from learning_platform.jobs.retention import queries as retention
from learning_platform.jobs.retention.contracts import PruneParams


def _encode(key: list[Any] | None) -> list[Any] | None:
    """A keyset position as JSON; timestamps are marked so they come back as datetimes."""
    if key is None:
        return None
    return [{"at": value.isoformat()} if isinstance(value, datetime) else value for value in key]


def _decode(position: list[Any] | None) -> list[Any] | None:
    if position is None:
        return None
    return [
        datetime.fromisoformat(value["at"]) if isinstance(value, dict) else value
        for value in position
    ]


class RetentionActivities:
    def __init__(self, engine: AsyncEngine, batch_size: int) -> None:
        self._engine = engine
        self._batch_size = batch_size

    @implements(contracts.prune_expired_rows)
    async def prune_expired_rows(self, params: PruneParams) -> int:
        """Delete the target's rows older than `cutoff`, batch after batch, each its own
        transaction with the running count and position, so a retry resumes after the last
        committed batch and reports the exact count. Repeating it deletes nothing more."""
        target = retention.TARGETS[params.target]
        resumed = await resumed_checkpoint(self._engine)
        total, after = (0, None) if resumed is None else (resumed.total, _decode(resumed.position))
        while True:
            async with self._engine.begin() as conn:
                batch = await retention.prune_batch(
                    conn, target, cutoff=params.cutoff, after=after, limit=self._batch_size
                )
                total += batch.deleted
                after = batch.last_key or after
                await checkpoint(conn, Checkpoint(total, _encode(after)))
            if batch.read < self._batch_size:
                return total
