"""Notification kinds and outbox event types: one convention, refused before anything is
written when a name breaks it."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from learning_platform.core.models import Notification
from learning_platform.core.notifications import EventNameError, record_notification
from learning_platform.jobs.outbox_relay.events import enqueue_event
from learning_platform.jobs.outbox_relay.models import OutboxEvent
from tests.factories import add_user

BROKEN = ["session_completed", "Session.Completed", "session.", ".completed", "a.b.c", ""]


@pytest.mark.parametrize("kind", BROKEN)
async def test_a_notification_kind_off_the_convention_is_refused(
    engine: AsyncEngine, kind: str
) -> None:
    user_id = await add_user(engine)
    async with engine.begin() as conn:
        with pytest.raises(EventNameError, match=r"'<aggregate>\.<past tense>'"):
            await record_notification(
                conn, user_id=user_id, kind=kind, payload={}, dedupe_key=f"test:{kind}"
            )
        count = select(func.count()).where(Notification.user_id == user_id)
        assert (await conn.execute(count)).scalar_one() == 0


@pytest.mark.parametrize("event_type", BROKEN)
async def test_an_outbox_event_type_off_the_convention_is_refused(
    engine: AsyncEngine, event_type: str
) -> None:
    async with engine.begin() as conn:
        before = (await conn.execute(select(func.count()).select_from(OutboxEvent))).scalar_one()
        with pytest.raises(EventNameError):
            await enqueue_event(
                conn, aggregate_type="test", aggregate_id=1, event_type=event_type, payload={}
            )
        after = (await conn.execute(select(func.count()).select_from(OutboxEvent))).scalar_one()
        assert after == before


async def test_names_on_the_convention_are_written(engine: AsyncEngine) -> None:
    user_id = await add_user(engine)
    async with engine.begin() as conn:
        notification_id = await record_notification(
            conn, user_id=user_id, kind="session.completed", payload={}, dedupe_key="test:ok"
        )
        event_id = await enqueue_event(
            conn, aggregate_type="test", aggregate_id=1, event_type="test.happened", payload={}
        )
        await conn.rollback()
    assert notification_id is not None and event_id > 0
