"""One linear migration history: `alembic upgrade head` works from empty and from the old heads."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
from alembic import command
from alembic.script import ScriptDirectory

from learning_platform.commands.migrate import current_revisions
from learning_platform.core.database import libpq_url
from learning_platform.migrations import alembic_config, upgrade
from learning_platform.schema import metadata

# The four heads main had before the history was joined (each revised 0001).
BRANCH_HEADS = ("0002", "0003", "0004", "0005")


async def in_thread(function: Any, *args: Any) -> Any:
    """Alembic's env runs its own event loop, so migrations run off the test's loop."""
    return await asyncio.to_thread(function, *args)


def head_revision() -> str:
    heads = ScriptDirectory.from_config(alembic_config("postgresql://unused")).get_heads()
    assert len(heads) == 1, f"migrations must have one head, found {sorted(heads)}"
    return heads[0]


async def table_names(database_url: str) -> set[str]:
    connection = await asyncpg.connect(libpq_url(database_url))
    try:
        rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await connection.close()
    return {row["tablename"] for row in rows}


def test_history_has_exactly_one_head() -> None:
    head_revision()


async def test_upgrade_head_builds_every_table_on_an_empty_database(empty_database: str) -> None:
    await in_thread(command.upgrade, alembic_config(empty_database), "head")

    assert await in_thread(current_revisions, empty_database) == {head_revision()}
    assert set(metadata.tables) <= await table_names(empty_database)


async def test_a_database_at_the_old_branch_heads_upgrades_to_the_one_head(
    empty_database: str,
) -> None:
    config = alembic_config(empty_database)
    for branch_head in BRANCH_HEADS:
        await in_thread(command.upgrade, config, branch_head)
    assert await in_thread(current_revisions, empty_database) == set(BRANCH_HEADS)

    await in_thread(upgrade, empty_database)

    assert await in_thread(current_revisions, empty_database) == {head_revision()}


async def test_downgrade_to_base_and_back_round_trips(empty_database: str) -> None:
    config = alembic_config(empty_database)
    await in_thread(upgrade, empty_database)

    await in_thread(command.downgrade, config, "base")
    assert await table_names(empty_database) == {"alembic_version"}
    await in_thread(upgrade, empty_database)

    assert await in_thread(current_revisions, empty_database) == {head_revision()}
    assert set(metadata.tables) <= await table_names(empty_database)


# Migration 0010: the notification triggers' cheaper form (one NOTIFY per user per statement).
CHEAPER_NOTIFICATION_TRIGGERS = "0010"


Notified = list[dict[str, int]]
Written = dict[int, list[int]]


async def notifies_of_one_insert(database_url: str) -> tuple[Notified, Written]:
    """What LISTEN hears of one INSERT of two rows for user 1 and one for user 2, and the ids
    the insert wrote for each user."""
    connection = await asyncpg.connect(libpq_url(database_url))
    heard: asyncio.Queue[str] = asyncio.Queue()
    try:
        await connection.add_listener("notifications", lambda *args: heard.put_nowait(args[3]))
        await connection.execute(
            "INSERT INTO users (id, email, display_name) VALUES (1, 'a', 'a'), (2, 'b', 'b') "
            "ON CONFLICT DO NOTHING"
        )
        rows = await connection.fetch(
            "INSERT INTO notifications (user_id, kind, dedupe_key) "
            "SELECT owner, 'test.inserted', gen_random_uuid()::text "
            "FROM unnest(ARRAY[1, 2, 1]) AS written(owner) RETURNING id, user_id"
        )
        await connection.execute("NOTIFY notifications, 'end'")  # delivered after the insert's
        payloads = []
        async with asyncio.timeout(5):
            while (payload := await heard.get()) != "end":
                payloads.append(json.loads(payload))
    finally:
        await connection.close()
    written = {user: sorted(r["id"] for r in rows if r["user_id"] == user) for user in (1, 2)}
    return sorted(payloads, key=lambda p: (p["user_id"], p["id"])), written


async def test_notification_triggers_notify_per_user_and_downgrade_to_a_notify_per_row(
    empty_database: str,
) -> None:
    config = alembic_config(empty_database)
    await in_thread(upgrade, empty_database)
    per_user = await notifies_of_one_insert(empty_database)
    below = ScriptDirectory.from_config(config).get_revision(CHEAPER_NOTIFICATION_TRIGGERS)
    await in_thread(command.downgrade, config, below.down_revision)
    per_row = await notifies_of_one_insert(empty_database)
    await in_thread(upgrade, empty_database)
    per_user_again = await notifies_of_one_insert(empty_database)

    # Two NOTIFYs for three rows (each user's lowest and highest id), then one per row as
    # migration 0001's triggers sent, then two again.
    for notified, written in (per_user, per_user_again):
        assert notified == [
            {"id": ids[-1], "user_id": user, "first_id": ids[0]} for user, ids in written.items()
        ]
    notified, written = per_row
    assert notified == [{"id": i, "user_id": user} for user, ids in written.items() for i in ids]
