"""Writing notifications inside the caller's transaction (the API streams them over SSE)."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from learning_platform.core.errors import ServiceError
from learning_platform.core.models import Notification
from learning_platform.core.tracing import TRACER, current_trace_id

# Notification kinds and outbox event types follow one convention: `<aggregate>.<what
# happened>`, lower snake case, past tense (`session.completed`, `question_set.requested`).
# A notification's kind is also its SSE event name, which browsers subscribe to.
EVENT_NAME = re.compile(r"[a-z][a-z_]*\.[a-z][a-z_]*")


class EventNameError(ServiceError, ValueError):
    """An event name that does not follow EVENT_NAME's convention."""


def checked_event_name(name: str) -> str:
    if EVENT_NAME.fullmatch(name) is None:
        raise EventNameError(
            f"event name {name[:60]!r} does not follow '<aggregate>.<past tense>' in lower "
            "snake case, e.g. 'session.completed'"
        )
    return name


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
    NOTIFY at commit, which the API turns into an SSE event; another trigger makes one user's
    ids commit in id order (migration 0001), so bulk `INSERT … SELECT` writers get that too.
    """
    checked_event_name(kind)
    # The run's trace (None outside one), so an operator can go from a notification to it.
    trace_id = current_trace_id()
    attributes: dict[str, str | int] = {"notification.kind": kind, "user.id": user_id}
    with TRACER.start_as_current_span("write notification", attributes=attributes) as span:
        statement = (
            insert(Notification)
            .values(
                user_id=user_id,
                kind=kind,
                payload=payload,
                dedupe_key=dedupe_key,
                trace_id=trace_id,
            )
            .on_conflict_do_nothing(index_elements=[Notification.dedupe_key])
            .returning(Notification.id)
        )
        notification_id = (await conn.execute(statement)).scalar_one_or_none()
        if notification_id is not None:
            span.set_attribute("notification.id", notification_id)
        return notification_id
