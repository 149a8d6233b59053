"""Resumable keyset batches: where a walk is, what one batch did, and the checkpoint that each
batch commits with its changes (the loop itself is `activities.batches.run_batches`).

A batch job walks an index in key order, one bounded batch per transaction, each re-checking its
condition as it writes (DESIGN.md, "Sweeps walk an index by keyset"). Its position is a
`Keyset`: the index key of the last row it passed, so the next batch reads the rows after it;
`None` is before the first row.

A heartbeat reaches Temporal after its batch committed, and the SDK throttles heartbeats (to
80 % of the heartbeat timeout), so when a worker dies the last one Temporal has can be many
batches behind what was committed. A retry resuming from it redoes those batches, which is
harmless but finds their rows already changed, so the run would report fewer rows than it
changed. A checkpoint written in the batch's transaction is exactly what was committed: the
retry resumes after it and the run's count is exact. Walking again from the start with the
committed count would be exact too, only slower (the rows changed before no longer match), and
that is how a checkpoint this code cannot read (one written by an older release) is resumed.
Rows older than a week are pruned when an activity starts; by then their workflow has long
finished.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from learning_platform.core.models import JobCheckpoint

log = logging.getLogger(__name__)

KeyValue = str | int | float | datetime
# The index key of the last row a walk passed, in the index's column order. A prefix sorts
# before every key it begins (`(status,)` is before the first row of that status).
Keyset = tuple[KeyValue, ...]


@dataclass(frozen=True)
class BatchOutcome:
    """What one batch did: every batch query returns it, `run_batches` sums and checkpoints it."""

    changed: int  # the rows the job counts
    position: Keyset | None  # the next batch starts after it (unchanged if nothing was read)
    last_batch: bool  # nothing is left after `position`: the walk is complete


def keyset_outcome(
    *, changed: int, read: int, limit: int, after: Keyset | None, last_key: Keyset | None
) -> BatchOutcome:
    """The outcome of a batch that read `read` rows (at most `limit`) after `after`, the last
    with key `last_key`: a batch shorter than `limit` found the end of the walk."""
    return BatchOutcome(changed, last_key if read else after, last_batch=read < limit)


def outcome_of_row(
    row: Row[Any] | None, key: Sequence[str], *, limit: int, after: Keyset | None
) -> BatchOutcome:
    """The outcome of a batch statement whose result row has `read`, `changed` and the `key`
    columns of the last row it read (no result row, or NULL keys, when it read none)."""
    read = 0 if row is None else int(row.read)
    return keyset_outcome(
        changed=0 if row is None else int(row.changed),
        read=read,
        limit=limit,
        after=after,
        last_key=tuple(getattr(row, column) for column in key) if read else None,
    )


def rows_after(columns: Sequence[str], position: Keyset | None) -> str:
    """The SQL condition "`columns` come after `position`" (`true` for None or an empty key),
    with the values of `after_parameters(position)`. The columns are the leading columns of the
    index walked, so the condition is the index scan's lower bound."""
    if not position:
        return "true"
    if len(position) != len(columns):
        raise ValueError(f"position {position!r} does not match the key columns {columns!r}")
    marks = ", ".join(f":after_{i}" for i in range(len(position)))
    return f"({', '.join(columns)}) > ({marks})"


def after_parameters(position: Keyset | None) -> dict[str, KeyValue]:
    return {f"after_{i}": value for i, value in enumerate(position or ())}


def encode_position(position: Keyset | None) -> list[Any] | None:
    """A position as JSON (checkpoints, heartbeats); timestamps are marked so they come back
    as datetimes."""
    if position is None:
        return None
    return [
        {"at": value.isoformat()} if isinstance(value, datetime) else value for value in position
    ]


def decode_position(encoded: list[Any] | None) -> Keyset | None:
    if encoded is None:
        return None
    return tuple(
        datetime.fromisoformat(value["at"]) if isinstance(value, dict) else value
        for value in encoded
    )


@dataclass(frozen=True)
class Checkpoint:
    total: int
    position: Keyset | None


def _stored(position: Keyset | None) -> dict[str, Any]:
    return {"after": encode_position(position)}


async def load_checkpoint(conn: AsyncConnection, key: str) -> Checkpoint | None:
    row = (
        await conn.execute(
            select(JobCheckpoint.total, JobCheckpoint.position).where(
                JobCheckpoint.activity_key == key
            )
        )
    ).one_or_none()
    if row is None:
        return None
    if not isinstance(row.position, dict) or "after" not in row.position:
        log.warning(
            "checkpoint in an older format: the walk starts again, keeping the count",
            extra={"activity_key": key, "total": row.total},
        )
        return Checkpoint(row.total, None)
    return Checkpoint(row.total, decode_position(row.position["after"]))


async def save_checkpoint(conn: AsyncConnection, key: str, checkpoint: Checkpoint) -> None:
    statement = insert(JobCheckpoint).values(
        activity_key=key, total=checkpoint.total, position=_stored(checkpoint.position)
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


# A batch holds the row locks of what it changed until it commits, so its time is bounded:
# after a batch that took longer than this the next takes proportionally fewer rows, and while
# batches are quicker the size grows back, at most doubling per batch, to the configured one.
BATCH_TARGET_SECONDS = 1.0


def next_limit(limit: int, *, most: int, took: float, target: float = BATCH_TARGET_SECONDS) -> int:
    """The size of the batch after one of `limit` rows that took `took` seconds: as many rows
    as fit in `target` at that rate, at most twice `limit` and `most`, at least one."""
    fits = int(limit * target / took) if took > 0 else most
    return max(1, min(most, 2 * limit, fits))


KEEP_FOR = timedelta(days=7)


async def prune_checkpoints(conn: AsyncConnection, older_than: timedelta = KEEP_FOR) -> None:
    await conn.execute(
        delete(JobCheckpoint).where(JobCheckpoint.updated_at < func.now() - older_than)
    )
