"""The running activity's checkpoint (learning_platform.core.checkpoints): every attempt of one
activity shares it, a later run of the job does not."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from temporalio import activity

from learning_platform.core.checkpoints import (
    Checkpoint,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)


def checkpoint_key(info: activity.Info) -> str:
    return f"{info.workflow_id}/{info.workflow_run_id}/{info.activity_id}"


def _key() -> str:
    return checkpoint_key(activity.info())


async def resumed_checkpoint(engine: AsyncEngine) -> Checkpoint | None:
    """Where an earlier attempt of this activity got to (None on the first attempt)."""
    async with engine.begin() as conn:
        await prune_checkpoints(conn)
        return await load_checkpoint(conn, _key())


async def checkpoint(conn: AsyncConnection, progress: Checkpoint) -> None:
    """Record `progress` in the batch's transaction `conn`, and heartbeat it (for liveness
    and for the Temporal UI's pending-activity view)."""
    await save_checkpoint(conn, _key(), progress)
    activity.heartbeat(progress.total, progress.position)
