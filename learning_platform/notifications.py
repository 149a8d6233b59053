"""Writing notifications inside the caller's transaction (the API streams them over SSE)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from learning_platform.models import Notification


async def record_notification(
    conn: AsyncConnection,
    *,
    user_id: int,
    kind: str,
    payload: dict[str, Any],
    dedupe_key: str,
) -> int | None:
    """Insert a notification unless one with `dedupe_key` exists; return its id if inserted.

    Call it in the same transaction as the change it announces. The table's trigger sends a
    NOTIFY at commit, which the API turns into an SSE event.
    """
    await _serialise_user_notifications(conn, user_id)
    statement = (
        insert(Notification)
        .values(user_id=user_id, kind=kind, payload=payload, dedupe_key=dedupe_key)
        .on_conflict_do_nothing(index_elements=[Notification.dedupe_key])
        .returning(Notification.id)
    )
    return (await conn.execute(statement)).scalar_one_or_none()


async def _serialise_user_notifications(conn: AsyncConnection, user_id: int) -> None:
    """Make one user's notification ids commit in id order.

    Identity values are handed out at insert, not at commit: without this lock, a transaction
    holding id 9 could commit after one holding id 10, and a stream that already sent 10 (or a
    client resuming with Last-Event-ID 10) would never see 9. Holding a per-user lock from
    before the id is drawn until commit serialises a user's notification writers, so "every id
    above the last one sent" is exactly what a user's stream still owes (see api/streams.py).
    """
    key = func.hashtextextended(f"notifications:user:{user_id}", 0)
    await conn.execute(select(func.pg_advisory_xact_lock(key)))
