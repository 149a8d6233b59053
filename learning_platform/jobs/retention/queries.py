"""Deleting rows past their age, one bounded batch at a time, walking an index by keyset.

Each target names the index whose leading columns are its keyset (`key`) and the column whose
age decides (`age_column`). A batch reads the next `limit` keys after the previous batch's last
key, and its DELETE re-checks the age, so a row that changed in between stays. A key that is
the age column itself (notifications) makes the walk stop at the cutoff; the others scan their
primary key once per run, which is fine for tables a daily job walks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from learning_platform.jobs.retention.contracts import (
    DEAD_LETTERS,
    NOTIFICATIONS,
    PAGE_CRAWLS,
    URL_SUMMARIES,
)


@dataclass(frozen=True)
class RetentionTarget:
    table: str
    key: tuple[str, ...]
    age_column: str


TARGETS: dict[str, RetentionTarget] = {
    # ix_notifications_created_at_id (migration 0007).
    NOTIFICATIONS: RetentionTarget("notifications", ("created_at", "id"), "created_at"),
    DEAD_LETTERS: RetentionTarget("outbox_dead_letters", ("id",), "dead_lettered_at"),
    PAGE_CRAWLS: RetentionTarget("page_crawls", ("session_id", "url"), "crawled_at"),
    # Deleting a summary makes the next session with that URL summarise the page afresh.
    URL_SUMMARIES: RetentionTarget("url_summaries", ("url", "generator"), "created_at"),
}


@dataclass(frozen=True)
class PruneBatch:
    read: int
    deleted: int
    last_key: list[Any] | None  # None when the batch read nothing


def _batch_sql(target: RetentionTarget, after: bool) -> str:
    keys = ", ".join(target.key)
    position = ", ".join(f":after_{i}" for i in range(len(target.key)))
    after_clause = f"({keys}) > ({position}) AND " if after else ""
    last = ", ".join(f"{column} DESC" for column in target.key)
    # The DELETE finds the batch's rows by their ctid (a direct heap fetch, no second index
    # lookup); batch and DELETE are one statement, so the ctids are those just read. A row
    # updated in between is re-checked (and kept) under READ COMMITTED.
    return f"""
        WITH batch AS (
            SELECT ctid, {keys} FROM {target.table}
             WHERE {after_clause}{target.age_column} < :cutoff
             ORDER BY {keys} LIMIT :limit
        ), deleted AS (
            DELETE FROM {target.table}
             WHERE ctid = ANY(ARRAY(SELECT ctid FROM batch)) AND {target.age_column} < :cutoff
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM batch) AS read, (SELECT count(*) FROM deleted) AS deleted,
               last.*
          FROM (SELECT 1) AS one
          LEFT JOIN LATERAL (SELECT {keys} FROM batch ORDER BY {last} LIMIT 1) AS last ON true
    """


async def prune_batch(
    conn: AsyncConnection,
    target: RetentionTarget,
    *,
    cutoff: datetime,
    after: list[Any] | None,
    limit: int,
) -> PruneBatch:
    params: dict[str, Any] = {"cutoff": cutoff, "limit": limit}
    if after is not None:
        params.update({f"after_{i}": value for i, value in enumerate(after)})
    row = (await conn.execute(text(_batch_sql(target, after is not None)), params)).one()
    last_key = None if row.read == 0 else [getattr(row, column) for column in target.key]
    return PruneBatch(read=row.read, deleted=row.deleted, last_key=last_key)
