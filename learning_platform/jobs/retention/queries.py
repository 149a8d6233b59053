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

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from learning_platform.core.batches import (
    BatchOutcome,
    Keyset,
    after_parameters,
    outcome_of_row,
    rows_after,
)
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


def _batch_sql(target: RetentionTarget, after: Keyset | None) -> str:
    keys = ", ".join(target.key)
    last = ", ".join(f"{column} DESC" for column in target.key)
    # The DELETE finds the batch's rows by their ctid (a direct heap fetch, no second index
    # lookup); batch and DELETE are one statement, so the ctids are those just read. A row
    # updated in between is re-checked (and kept) under READ COMMITTED.
    return f"""
        WITH batch AS (
            SELECT ctid, {keys} FROM {target.table}
             WHERE {rows_after(target.key, after)} AND {target.age_column} < :cutoff
             ORDER BY {keys} LIMIT :limit
        ), deleted AS (
            DELETE FROM {target.table}
             WHERE ctid = ANY(ARRAY(SELECT ctid FROM batch)) AND {target.age_column} < :cutoff
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM batch) AS read, (SELECT count(*) FROM deleted) AS changed,
               last.*
          FROM (SELECT 1) AS one
          LEFT JOIN LATERAL (SELECT {keys} FROM batch ORDER BY {last} LIMIT 1) AS last ON true
    """


async def prune_batch(
    conn: AsyncConnection,
    *,
    target: RetentionTarget,
    cutoff: datetime,
    after: Keyset | None,
    limit: int,
) -> BatchOutcome:
    """Delete the next `limit` rows of `target` older than `cutoff`, after `after` in the
    order of `target.key` (None: from the first)."""
    parameters = {"cutoff": cutoff, "limit": limit} | after_parameters(after)
    row = (await conn.execute(text(_batch_sql(target, after)), parameters)).one()
    return outcome_of_row(row, target.key, limit=limit, after=after)
