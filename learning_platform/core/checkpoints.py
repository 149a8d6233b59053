"""Exact progress of a batch activity, committed in each batch's own transaction.

A heartbeat reaches Temporal after its batch committed, and the SDK throttles heartbeats (to
80 % of the heartbeat timeout), so when a worker dies the last one Temporal has can be many
batches behind what was committed. A retry resuming from it redoes those batches, which is
harmless (each re-checks its condition) but finds their rows already changed, so the run
reported fewer rows than it changed. A checkpoint written with the batch is exactly what was
committed: the retry resumes after it and the run's count is exact. Rows older than a week
are pruned when an activity starts; by then their workflow has long finished.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from learning_platform.core.models import JobCheckpoint

KEEP_FOR = timedelta(days=7)


@dataclass(frozen=True)
class Checkpoint:
    total: int
    position: Any  # JSON: what the activity needs to continue after the last batch


async def load_checkpoint(conn: AsyncConnection, key: str) -> Checkpoint | None:
    row = (
        await conn.execute(
            select(JobCheckpoint.total, JobCheckpoint.position).where(
                JobCheckpoint.activity_key == key
            )
        )
    ).one_or_none()
    return None if row is None else Checkpoint(row.total, row.position)


async def save_checkpoint(conn: AsyncConnection, key: str, checkpoint: Checkpoint) -> None:
    statement = insert(JobCheckpoint).values(
        activity_key=key, total=checkpoint.total, position=checkpoint.position
    )
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=[JobCheckpoint.activity_key],
            set_={
                "total": statement.excluded.total,
                "position": statement.excluded.position,
                "updated_at": func.now(),
            },
        )
    )


async def prune_checkpoints(conn: AsyncConnection, older_than: timedelta = KEEP_FOR) -> None:
    await conn.execute(
        delete(JobCheckpoint).where(JobCheckpoint.updated_at < func.now() - older_than)
    )
