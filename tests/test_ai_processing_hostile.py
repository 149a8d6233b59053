"""A session whose visits include hostile pages: real PostgreSQL, Temporal, loopback pages and
the scripted LLM. The good pages are summarised and mapped, each hostile page is recorded failed
with its reason, and no activity attempt is lost to them (each would once have failed the whole
session after every retry, or taken the worker down)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from activities.registry import Dependencies
from learning_platform.core.settings import Settings
from learning_platform.jobs.ai_processing.contracts import ProcessSessionInput, session_workflow_id
from tests.ai_processing_helpers import add_processing_session, rows, summarising_responder
from tests.factories import add_user
from tests.fake_openai import FakeOpenAI
from tests.hostile_pages import (
    HostileServer,
    Reply,
    head,
    hostile_server,
    html_reply,
    readable_html,
    stacked_gzip,
)
from tests.pages_server import serving_pages
from worker import create_workers
from workflows.ai_processing import ProcessSession

DEADLINE = 2.0


@pytest.fixture(scope="module")
def pages() -> Iterator[str]:
    with serving_pages() as base:
        yield base


@pytest.fixture(scope="module")
def server() -> Iterator[HostileServer]:
    with hostile_server() as running:
        yield running


@pytest.fixture
def llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI.running() as fake:
        fake.responder = summarising_responder
        yield fake


def hostile_pages(server: HostileServer) -> dict[str, str]:
    """URL -> the reason its failure must give."""

    def redirect(location: str) -> str:
        return server.add(Reply(head("302 Found", f"Location: {location}", "Content-Length: 0")))

    return {
        server.add(html_reply(stacked_gzip(1 << 30, 2), "Content-Encoding: gzip, gzip")): (
            "compressed more than once"
        ),
        redirect("http://[::1"): "could not fetch the page",
        redirect("http://127.0.0.1:99999/"): "not a TCP port",
        redirect("http://xn--/"): "could not fetch the page (UnicodeError",
        redirect("http://[2002:a9fe:a9fe::]/latest/meta-data/"): "non-public address",
        server.add(
            Reply(head("200 OK", "Content-Length: 9999"), b"<p>" * 3333, 1, pause_seconds=0.5)
        ): f"longer than {DEADLINE:g} s",
    }


async def test_hostile_pages_fail_alone_and_the_session_completes(
    engine: AsyncEngine,
    client: Client,
    settings: Settings,
    llm: FakeOpenAI,
    pages: str,
    server: HostileServer,
) -> None:
    good = [f"{pages}/article/{n}" for n in range(2)]
    odd_charset = server.add(html_reply(readable_html(), content_type="text/html; charset=base64"))
    hostile = hostile_pages(server)
    user = await add_user(engine)
    session = await add_processing_session(engine, user, [*good, odd_charset, *hostile])
    tight = settings.model_copy(
        update=llm.settings_update(
            crawler_allowed_hosts=["127.0.0.1"],
            crawler_fetch_deadline_seconds=DEADLINE,
            crawler_max_bytes=200_000,
        )
    )
    main, ai = create_workers(client, Dependencies(settings=tight, engine=engine, temporal=client))
    workflow_id = f"{session_workflow_id(session)}-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    async with ai, main:
        result = await client.execute_workflow(
            ProcessSession.run,
            ProcessSessionInput(session_id=session),
            id=workflow_id,
            task_queue=main.task_queue,
        )
    elapsed = time.monotonic() - started

    assert result.outcome == "completed"
    crawls = {
        r.url: (r.outcome, r.error)
        for r in await rows(engine, "SELECT url, outcome, error FROM page_crawls")
    }
    assert {url: crawls[url][0] for url in [*good, odd_charset]} == dict.fromkeys(
        [*good, odd_charset], "summarized"
    )
    for url, reason in hostile.items():
        outcome, error = crawls[url]
        assert outcome == "failed" and error is not None and reason in error, (url, error)
    (mind_map,) = await rows(engine, "SELECT data FROM mind_maps")
    linked = {url for branch in mind_map.data["branches"] for url in branch["page_urls"]}
    assert linked == {*good, odd_charset}
    # Every page in parallel, the slowest ended by the deadline; no attempt was retried.
    assert elapsed < 30
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    attempts = [
        event.activity_task_started_event_attributes.attempt
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
    assert attempts and set(attempts) == {1}
