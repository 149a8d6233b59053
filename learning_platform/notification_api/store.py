"""The notification reads the API makes (asyncpg; the (user_id, id) index serves them all)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

# The database renders the SSE `data:` document, so the API never decodes and re-encodes payloads.
_COLUMNS = """
    id, user_id, kind,
    json_build_object('id', id, 'kind', kind, 'payload', payload,
                      'created_at', created_at)::text AS data
"""
# Each notified range is one user's rows of one statement (migration 0010); the (user_id, id)
# index gives each range's rows in one index scan. (`owner` and `first_id`/`last_id` are named
# so that no column of the range clashes with one of `_COLUMNS`.)
_IN_RANGES = f"""
    SELECT {_COLUMNS}
      FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS notified(owner, first_id, last_id)
      JOIN notifications ON user_id = owner AND id BETWEEN first_id AND last_id
     ORDER BY id
"""
_AFTER = f"""
    SELECT {_COLUMNS} FROM notifications
     WHERE user_id = $1 AND id > $2
     ORDER BY id
     LIMIT $3
"""
_LATEST_ID = "SELECT coalesce(max(id), 0) FROM notifications WHERE user_id = $1"

# What a query can raise when the database is away or restarting. InternalClientError included:
# a pooled connection the server dropped while idle can fail that way on its next use.
DATABASE_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


@dataclass(frozen=True, slots=True)
class StoredNotification:
    id: int
    user_id: int
    kind: str
    data: str


def _rows(records: Sequence[asyncpg.Record]) -> list[StoredNotification]:
    return [StoredNotification(r["id"], r["user_id"], r["kind"], r["data"]) for r in records]


@dataclass(frozen=True, slots=True)
class NotifiedRange:
    """One user's ids `first_id`..`last_id` that a NOTIFY announced (a single row: both equal)."""

    user_id: int
    first_id: int
    last_id: int


async def notifications_in_ranges(
    pool: asyncpg.Pool, ranges: Sequence[NotifiedRange]
) -> list[StoredNotification]:
    """The rows of every range (each of its user's ids from first to last), oldest first."""
    records = await pool.fetch(
        _IN_RANGES,
        [r.user_id for r in ranges],
        [r.first_id for r in ranges],
        [r.last_id for r in ranges],
    )
    return _rows(records)


async def notifications_after(
    pool: asyncpg.Pool, user_id: int, after_id: int, limit: int
) -> list[StoredNotification]:
    """The user's notifications with an id above `after_id`, oldest first, at most `limit`."""
    return _rows(await pool.fetch(_AFTER, user_id, after_id, limit))


async def latest_notification_id(pool: asyncpg.Pool, user_id: int) -> int:
    return int(await pool.fetchval(_LATEST_ID, user_id))
