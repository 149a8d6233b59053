"""The resumable-batch loop every batch activity runs (the types and the checkpoint storage are
in learning_platform.core.batches)."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from temporalio import activity

from learning_platform.core.batches import (
    BATCH_TARGET_SECONDS,
    BatchOutcome,
    Checkpoint,
    Keyset,
    encode_position,
    load_checkpoint,
    next_limit,
    prune_checkpoints,
    save_checkpoint,
)


class Batch(Protocol):
    """One batch in the transaction `conn`: at most `limit` rows after `after` (None: from the
    first). The family's batch query with its other arguments bound (`functools.partial`)."""

    def __call__(
        self, conn: AsyncConnection, *, after: Keyset | None, limit: int
    ) -> Awaitable[BatchOutcome]: ...


def checkpoint_key(info: activity.Info) -> str:
    """Every attempt of one activity shares its checkpoint; a later run of the job does not."""
    return f"{info.workflow_id}/{info.workflow_run_id}/{info.activity_id}"


async def run_batches(
    engine: AsyncEngine, batch: Batch, *, limit: int, target: float = BATCH_TARGET_SECONDS
) -> int:
    """Run `batch` until it reports the last batch, each in its own transaction that also
    commits the running total and the position; returns the total of `changed`.

    An attempt resumes after the last batch an earlier attempt of this activity committed, with
    its total, so a retry after a killed worker reports the exact count. Each batch heartbeats
    (total, position) from inside its transaction: liveness, and the Temporal UI's view of it.

    Batches take `limit` rows, fewer after one that outlasted `target` seconds
    (`next_limit`). One connection serves the whole walk: checking one out of the pool for
    every batch cost a pre-ping round trip each time; a broken connection fails the attempt,
    whose retry resumes from the checkpoint, as a failed batch did before.
    """
    key = checkpoint_key(activity.info())
    async with engine.connect() as conn:
        async with conn.begin():
            await prune_checkpoints(conn)
            resumed = await load_checkpoint(conn, key)
        total, position = (0, None) if resumed is None else (resumed.total, resumed.position)
        size = limit
        while True:
            started = time.monotonic()
            async with conn.begin():
                outcome = await batch(conn, after=position, limit=size)
                total += outcome.changed
                position = outcome.position
                await save_checkpoint(conn, key, Checkpoint(total, position))
                activity.heartbeat(total, encode_position(position))
            if outcome.last_batch:
                return total
            size = next_limit(size, most=limit, took=time.monotonic() - started, target=target)
