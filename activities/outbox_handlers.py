"""What each outbox event type does when the relay delivers it.

Same-database handlers write on the relay's connection (their effect commits with the event's
removal). The question-set handler starts a workflow whose id is fixed by the set and attempt,
so a redelivery after a crash attaches to the same workflow instead of starting another.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection
from temporalio.client import Client

from activities.question_sets import start_generation_workflow
from learning_platform.core.settings import Settings
from learning_platform.core.tracing import continued_span
from learning_platform.jobs.learn_stats import queries as learn_stats
from learning_platform.jobs.outbox_relay.queries import EventHandler, MalformedEvent, PendingEvent
from learning_platform.jobs.question_sets import queries as question_sets


def int_field(event: PendingEvent, name: str) -> int:
    value: Any = event.payload.get(name) if isinstance(event.payload, dict) else None
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedEvent(
            f"event {event.id} ({event.event_type}): payload field {name!r} must be an "
            f"integer, got {value!r}"
        )
    return value


def learning_recorded_handler(timezone: str) -> EventHandler:
    async def handle(conn: AsyncConnection, events: Sequence[PendingEvent]) -> None:
        record_ids = [int_field(event, "learning_record_id") for event in events]
        await learn_stats.apply_learning_records(conn, record_ids, timezone)

    return handle


def question_set_requested_handler(client: Client, settings: Settings) -> EventHandler:
    async def handle(conn: AsyncConnection, events: Sequence[PendingEvent]) -> None:
        for event in events:
            question_set_id, attempt = (
                int_field(event, "question_set_id"),
                int_field(event, "attempt"),
            )
            # Continues the trace of the code that requested the set, into its workflow.
            attributes = {
                "outbox.event_id": event.id,
                "question_set.id": question_set_id,
                "question_set.attempt": attempt,
            }
            with continued_span(f"deliver {event.event_type}", event.trace_context, attributes):
                await start_generation_workflow(client, settings, question_set_id, attempt)

    return handle


def build_handlers(client: Client, settings: Settings) -> Mapping[str, EventHandler]:
    return {
        learn_stats.LEARNING_RECORDED: learning_recorded_handler(settings.schedule_timezone),
        question_sets.REQUESTED_EVENT: question_set_requested_handler(client, settings),
    }
