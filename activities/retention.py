"""Activities of the retention job."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from sqlalchemy.ext.asyncio import AsyncEngine

from activities.batches import run_batches
from activities.interfaces import implements
from learning_platform.jobs.retention import contracts
from learning_platform.jobs.retention import queries as retention
from learning_platform.jobs.retention.contracts import PruneParams


@dataclass(frozen=True, eq=False)
class RetentionActivities:
    engine: AsyncEngine
    batch_size: int

    @implements(contracts.RetentionActivities.prune_expired_rows)
    async def prune_expired_rows(self, params: PruneParams) -> int:
        """Delete the target's rows older than `cutoff`, batch after batch. Repeating it
        deletes nothing more."""
        batch = partial(
            retention.prune_batch,
            target=retention.TARGETS[params.target],
            cutoff=params.cutoff,
        )
        return await run_batches(self.engine, batch, limit=self.batch_size)
