"""The resumable-batch loop every batch activity runs (the types and the checkpoint storage are
in learning_platform.core.batches)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from temporalio import activity

from learning_platform.core.batches import (
    BatchOutcome,
    Checkpoint,
    Keyset,
    encode_position,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)


class Batch(Protocol):
    """One batch in the transaction `conn`: the rows after `after` (None: from the first). The
    family's batch query with its other arguments bound (`functools.partial`)."""

    def __call__(
        self, conn: AsyncConnection, *, after: Keyset | None
    ) -> Awaitable[BatchOutcome]: ...


def checkpoint_key(info: activity.Info) -> str:
    """Every attempt of one activity shares its checkpoint; a later run of the job does not."""
    return f"{info.workflow_id}/{info.workflow_run_id}/{info.activity_id}"


async def run_batches(engine: AsyncEngine, batch: Batch) -> int:
    """Run `batch` until it reports the last batch, each in its own transaction that also
    commits the running total and the position; returns the total of `changed`.

    An attempt resumes after the last batch an earlier attempt of this activity committed, with
    its total, so a retry after a killed worker reports the exact count. Each batch heartbeats
    (total, position) from inside its transaction: liveness, and the Temporal UI's view of it.
    """
    key = checkpoint_key(activity.info())
    async with engine.begin() as conn:
        await prune_checkpoints(conn)
        resumed = await load_checkpoint(conn, key)
    total, position = (0, None) if resumed is None else (resumed.total, resumed.position)
    while True:
        async with engine.begin() as conn:
            outcome = await batch(conn, after=position)
            total += outcome.changed
            position = outcome.position
            await save_checkpoint(conn, key, Checkpoint(total, position))
            activity.heartbeat(total, encode_position(position))
        if outcome.last_batch:
            return total
