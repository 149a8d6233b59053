"""Scenario 6: bad input of every kind the jobs meet. Each gets a clear error, and the good
work beside it goes through untouched."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime

import httpx
import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from activities.question_sets import request_and_start_question_set
from activities.registry import Dependencies
from learning_platform.core.notifications import record_notification
from learning_platform.core.settings import Settings
from learning_platform.jobs.ai_processing.contracts import ProcessSessionResult, session_workflow_id
from learning_platform.jobs.ai_processing.starters import process_session_now
from learning_platform.notification_api.auth import mint_token
from learning_platform.scheduling.declarations import declared_schedules
from learning_platform.scheduling.sync import ScheduleDeclarationError, apply
from learning_platform.storage import LocalObjectStorage
from tests.ai_processing_helpers import add_processing_session
from tests.factories import add_user
from tests.faults.report import FaultReport
from tests.faults.world import scalar
from tests.learning_helpers import (
    FAST_RETRY,
    drain,
    enqueue,
    production_handlers,
    record,
    stats,
)
from tests.pages_server import serving_pages
from tests.question_set_factories import STUDY_TEXT, add_source, question_set
from tests.sse_helpers import STREAM_PATH, api_server, open_stream
from worker import create_workers

pytestmark = pytest.mark.faults


async def test_s6_malformed_outbox_payloads_and_unknown_event_types(
    engine: AsyncEngine, client: Client, settings: Settings, fault_report: FaultReport
) -> None:
    user = await add_user(engine)
    await record(engine, user, datetime.now(UTC))
    bad = {
        "string id": await enqueue(engine, "learning.recorded", {"learning_record_id": "7"}, 9),
        "no field": await enqueue(engine, "learning.recorded", {}, 9),
        "not an object": await enqueue(engine, "learning.recorded", [1, 2], 10),  # type: ignore[arg-type]
        "unknown type": await enqueue(engine, "no_such.event", {"x": 1}, 11),
    }
    await record(engine, user, datetime.now(UTC))
    fault_report.injected(
        "outbox events with a string id, a missing field, a non-object payload and an unknown "
        "event type, between two good learning events"
    )
    await drain(engine, production_handlers(client, settings), retry=FAST_RETRY)

    async with engine.connect() as conn:
        letters = {
            row.id: row.last_error
            for row in await conn.execute(text("SELECT id, last_error FROM outbox_dead_letters"))
        }
    assert set(letters) == set(bad.values())
    assert "must be an integer, got '7'" in letters[bad["string id"]]
    assert "no handler for event type 'no_such.event'" in letters[bad["unknown type"]]
    assert (await stats(engine, user))["total_solved"] == 2
    fault_report.verified(
        "the four bad events were dead-lettered with their reason (e.g. "
        f"{letters[bad['string id']][:80]!r}); both good events were counted"
    )


async def test_s6_invalid_cron_at_apply_changes_nothing(
    client: Client, settings: Settings, fault_report: FaultReport
) -> None:
    declared = declared_schedules(settings)
    broken = [
        declared[0],
        dataclasses.replace(declared[1], schedule_id="nightly", cron="61 * * * *", every=None),
        *declared[2:],
    ]
    fault_report.injected("a declaration with cron '61 * * * *' among the valid ones")
    with pytest.raises(ScheduleDeclarationError) as raised:
        await apply(client, settings, broken)
    existing = [s.id async for s in await client.list_schedules()]
    assert "'61 * * * *' is not a valid cron expression" in str(raised.value)
    assert existing == []
    fault_report.verified(
        f"apply raised {str(raised.value).splitlines()[1].strip()!r}; no schedule was created"
    )


async def test_s6_huge_binary_and_unreachable_pages_and_unreadable_sources(
    engine: AsyncEngine, client: Client, settings: Settings, fault_report: FaultReport
) -> None:
    own = settings.model_copy(
        update={"crawler_allowed_hosts": ["127.0.0.1"], "crawler_max_bytes": 1_000_000}
    )
    storage = LocalObjectStorage(own.data_dir / "objects")
    await storage.put("good.txt", STUDY_TEXT.encode(), "text/plain")
    await storage.put("binary.txt", bytes(range(256)) * 8, "text/plain")
    user = await add_user(engine)
    sources = {
        "good": await add_source(engine, user, "good.txt"),
        "binary": await add_source(engine, user, "binary.txt"),
        "pdf": await add_source(engine, user, "good.txt.pdf", content_type="application/pdf"),
        "missing": await add_source(engine, user, "gone.txt"),
    }
    await storage.put("good.txt.pdf", b"%PDF-1.4", "application/pdf")
    main, ai = create_workers(client, Dependencies(own, engine, client))
    with serving_pages() as pages:
        session = await add_processing_session(
            engine, user, [f"{pages}/huge", f"{pages}/binary", f"{pages}/missing",
                           f"{pages}/article/0"],
        )  # fmt: skip
        fault_report.injected(
            "a session visiting a 2.4 MB page (cap 1 MB), a binary file, a 404 and one "
            "article; question sets on a binary 'text' source, a PDF and a missing object"
        )
        async with ai, main:
            await process_session_now(client, engine, session_id=session, task_queue=own.task_queue)
            result = await client.get_workflow_handle(
                session_workflow_id(session), result_type=ProcessSessionResult
            ).result()
            outcomes = {}
            for name, source in sources.items():
                handle = await request_and_start_question_set(
                    engine, client, own, user_id=user, source_id=source, title=name
                )
                outcomes[name] = await handle.result()
    crawls = await scalar(
        engine,
        "SELECT jsonb_object_agg(url, coalesce(error, outcome)) FROM page_crawls "
        "WHERE session_id = :s",
        s=session,
    )
    assert result.outcome == "completed"
    assert crawls[f"{pages}/article/0"] == "summarized"
    for url in ("huge", "binary", "missing"):
        assert crawls[f"{pages}/{url}"] not in ("summarized", "cached"), crawls
    fault_report.verified(
        "the session completed from its one readable page; the others were recorded as "
        + "; ".join(f"{u.rsplit('/', 1)[1]}: {e}" for u, e in crawls.items() if "article" not in u)
    )
    assert outcomes["good"].outcome == "completed"
    reasons = {}
    for name in ("binary", "pdf", "missing"):
        # Sets were requested in the order of `sources`, so their ids follow it from 1.
        row = await question_set(engine, list(sources).index(name) + 1)
        assert row.status == "failed" and not row.retryable, (name, row)
        reasons[name] = row.failure_reason or ""
    assert "not readable" in reasons["binary"]
    assert "application/pdf" in reasons["pdf"]
    assert "missing from storage" in reasons["missing"]
    fault_report.verified(
        "the good set completed; the bad ones failed at once, not retryable: "
        + "; ".join(f"{n}: {r[:70]}" for n, r in reasons.items())
    )


async def test_s6_forged_and_expired_tokens_leave_other_streams_alone(
    engine: AsyncEngine, settings: Settings, fault_report: FaultReport
) -> None:
    user = await add_user(engine)
    now = int(time.time())
    forged = jwt.encode({"sub": str(user), "exp": now + 60}, "not-the-secret-" * 3, "HS256")
    secret = settings.jwt_secret.get_secret_value()
    expired = jwt.encode({"sub": str(user), "exp": now - 600}, secret, "HS256")
    fault_report.injected("SSE requests with a forged, an expired and a garbage token")
    async with api_server(settings) as url, open_stream(url, mint_token(settings, user)) as live:
        async with httpx.AsyncClient(base_url=url) as http:
            answers = {
                name: await http.get(STREAM_PATH, headers={"Authorization": f"Bearer {token}"})
                for name, token in (("forged", forged), ("expired", expired),
                                    ("garbage", "x.y.z"))
            }  # fmt: skip
        async with engine.begin() as conn:
            sent = await record_notification(
                conn, user_id=user, kind="test.sent", payload={}, dedupe_key="after-bad-tokens"
            )
        event = await live.next_event(within=10)
    for name, answer in answers.items():
        assert answer.status_code == 401, name
        assert answer.json()["error"] == "invalid_token", name
    assert event.id == str(sent)
    fault_report.verified(
        "each got 401 invalid_token with a message (expired: "
        f"{answers['expired'].json()['message']!r}); the open stream still received its event"
    )
