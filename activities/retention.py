"""Activities of the retention job."""

from __future__ import annotations

from functools import partial

from sqlalchemy.ext.asyncio import AsyncEngine

from activities.batches import run_batches
from activities.interfaces import implements
from learning_platform.jobs.retention import contracts
from learning_platform.jobs.retention import queries as retention
from learning_platform.jobs.retention.contracts import PruneParams


class RetentionActivities:
    def __init__(self, engine: AsyncEngine, batch_size: int) -> None:
        self._engine = engine
        self._batch_size = batch_size

    @implements(contracts.RetentionActivities.prune_expired_rows)
    async def prune_expired_rows(self, params: PruneParams) -> int:
        """Delete the target's rows older than `cutoff`, batch after batch. Repeating it
        deletes nothing more."""
        batch = partial(
            retention.prune_batch,
            target=retention.TARGETS[params.target],
            cutoff=params.cutoff,
        )
        return await run_batches(self._engine, batch, limit=self._batch_size)
