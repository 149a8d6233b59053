"""The ai-processing job end to end: real PostgreSQL, Temporal, loopback pages, and the real
`openai` client talking to a scripted Chat Completions server."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker

import learning_platform.commands.sessions as sessions_cli
from activities.registry import Dependencies, build_ai_activities
from learning_platform.core.settings import Settings
from learning_platform.jobs.ai_processing.contracts import (
    AiProcessingInput,
    AiProcessingResult,
    ProcessSessionInput,
    ProcessSessionResult,
    session_workflow_id,
)
from learning_platform.jobs.ai_processing.starters import (
    SESSION_ID,
    SessionNotWaitingError,
    process_session_now,
)
from tests.ai_processing_helpers import add_processing_session, rows, summarising_responder
from tests.factories import add_user
from tests.fake_openai import FakeOpenAI, RecordedRequest, Reply
from tests.pages_server import serving_pages
from worker import create_ai_worker, create_worker, create_workers
from workflows.ai_processing import AiProcessing, ProcessSession


@pytest.fixture(scope="module")
def pages() -> Iterator[str]:
    with serving_pages() as base:
        yield base


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI.running() as fake:
        yield fake


@pytest.fixture
def llm(fake_llm: FakeOpenAI) -> FakeOpenAI:
    fake_llm.requests.clear()
    fake_llm.responder = summarising_responder
    return fake_llm


@pytest.fixture
def ai_settings(settings: Settings, llm: FakeOpenAI) -> Settings:
    return settings.model_copy(
        update=llm.settings_update(crawler_allowed_hosts=["127.0.0.1"], ai_max_concurrency=4)
    )


async def running_workers(
    client: Client, engine: AsyncEngine, settings: Settings
) -> AsyncIterator[Worker]:
    main, ai = create_workers(
        client, Dependencies(settings=settings, engine=engine, temporal=client)
    )
    async with ai, main:
        yield main


@pytest.fixture
async def ai_worker(
    client: Client, engine: AsyncEngine, ai_settings: Settings
) -> AsyncIterator[Worker]:
    async for main in running_workers(client, engine, ai_settings):
        yield main


async def process(client: Client, worker: Worker, session_id: int) -> ProcessSessionResult:
    return await client.execute_workflow(
        ProcessSession.run,
        ProcessSessionInput(session_id=session_id),
        id=f"{session_workflow_id(session_id)}-{uuid.uuid4().hex[:6]}",
        task_queue=worker.task_queue,
    )


async def session_row(engine: AsyncEngine, session_id: int) -> tuple[str, str | None]:
    (row,) = await rows(
        engine, "SELECT status, failure_reason FROM sessions WHERE id = :id", id=session_id
    )
    return row.status, row.failure_reason


async def test_session_gets_a_mind_map_its_user_is_told_and_usage_is_recorded(
    engine: AsyncEngine, client: Client, ai_worker: Worker, llm: FakeOpenAI, pages: str
) -> None:
    user = await add_user(engine)
    urls = [f"{pages}/article/{n}" for n in range(3)]
    visits = [*urls, f"{urls[0]}#section-2", f"{pages}/missing"]
    session = await add_processing_session(engine, user, visits)

    result = await process(client, ai_worker, session)

    assert result.outcome == "completed"
    assert await session_row(engine, session) == ("completed", None)
    (mind_map,) = await rows(engine, "SELECT central_topic, data FROM mind_maps")
    assert mind_map.central_topic == "How memory works"
    linked = {url for branch in mind_map.data["branches"] for url in branch["page_urls"]}
    assert linked == set(urls)
    (notification,) = await rows(engine, "SELECT user_id, kind, payload FROM notifications")
    assert (notification.user_id, notification.kind) == (user, "session.completed")
    assert notification.payload["session_id"] == session
    outcomes = {
        r.url: (r.outcome, r.http_status)
        for r in await rows(engine, "SELECT url, outcome, http_status FROM page_crawls")
    }
    assert outcomes == {
        **{url: ("summarized", None) for url in urls},
        f"{pages}/missing": ("failed", 404),
    }
    assert len(llm.requests_for("page_summary")) == 3, "the #fragment visit is the same page"
    assert len(llm.requests_for("mind_map")) == 1
    assert any("memory decays fast" in r.user_text for r in llm.requests_for("page_summary"))
    (usage,) = await rows(engine, "SELECT * FROM session_llm_usage")
    assert (usage.model, usage.requests) == (llm.model, 4)
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert (usage.pages_total, usage.pages_summarized, usage.pages_failed) == (4, 3, 1)


async def test_a_cached_url_is_not_summarised_again(
    engine: AsyncEngine, client: Client, ai_worker: Worker, llm: FakeOpenAI, pages: str
) -> None:
    user = await add_user(engine)
    first = await add_processing_session(engine, user, [f"{pages}/article/0"])
    await process(client, ai_worker, first)
    second = await add_processing_session(
        engine, user, [f"{pages}/article/0", f"{pages}/article/4"]
    )
    llm.requests.clear()

    result = await process(client, ai_worker, second)

    assert result.outcome == "completed"
    assert [r.user_text.count("/article/4") for r in llm.requests_for("page_summary")] == [1]
    assert (result.usage.pages_cached, result.usage.pages_summarized) == (1, 1)


async def test_long_pages_are_cut_to_the_token_budget(
    engine: AsyncEngine, client: Client, llm: FakeOpenAI, pages: str, ai_settings: Settings
) -> None:
    user = await add_user(engine)
    session = await add_processing_session(engine, user, [f"{pages}/article/1"])
    tight = ai_settings.model_copy(update={"llm_page_token_budget": 100})
    async for worker in running_workers(client, engine, tight):
        await process(client, worker, session)
    sent = llm.requests_for("page_summary")[0].user_text.split("Page text:\n", 1)[1]
    assert 150 < len(sent) <= 300


async def test_a_session_whose_pages_all_fail_is_failed_with_the_reasons(
    engine: AsyncEngine, client: Client, ai_worker: Worker, llm: FakeOpenAI, pages: str
) -> None:
    user = await add_user(engine)
    session = await add_processing_session(
        engine, user, [f"{pages}/missing", f"{pages}/binary", "http://10.0.0.1/intranet"]
    )

    result = await process(client, ai_worker, session)

    status, reason = await session_row(engine, session)
    assert status == "failed" and result.outcome == "failed"
    assert reason is not None and "none of the 3 visited pages" in reason
    assert "HTTP 404" in reason and "application/octet-stream" in reason
    assert "non-public address" in reason
    (notification,) = await rows(engine, "SELECT kind, payload FROM notifications")
    assert notification.kind == "session.failed" and notification.payload["reason"] == reason
    assert llm.requests == [], "nothing readable, nothing sent to the LLM"


async def test_429_waits_for_retry_after_then_succeeds(
    engine: AsyncEngine, client: Client, ai_worker: Worker, llm: FakeOpenAI, pages: str
) -> None:
    user = await add_user(engine)
    session = await add_processing_session(engine, user, [f"{pages}/article/2"])
    llm.script(Reply.error(429, retry_after=1.5))

    result = await process(client, ai_worker, session)

    assert result.outcome == "completed"
    limited, retried = llm.requests_for("page_summary")
    assert retried.received_at - limited.received_at >= 1.4


async def test_a_rate_limited_page_is_retried_alone_after_the_others_finished(
    engine: AsyncEngine, client: Client, ai_worker: Worker, llm: FakeOpenAI, pages: str
) -> None:
    user = await add_user(engine)
    urls = [f"{pages}/article/{n}" for n in range(3)]
    session = await add_processing_session(engine, user, urls)
    llm.script(Reply.error(429, retry_after=1))

    result = await process(client, ai_worker, session)

    assert result.outcome == "completed"
    summaries = llm.requests_for("page_summary")
    assert len(summaries) == 4, "only the rate-limited page is asked again"
    assert summaries[-1].received_at - summaries[0].received_at >= 0.9
    usage = result.usage
    assert (usage.pages_summarized, usage.pages_cached) == (3, 0), "resumed, not re-read"
    assert usage.requests == 3 + 1, "three summaries and the mind map; the 429 is not billed"


async def test_llm_requests_stay_within_the_limit_while_pages_run_concurrently(
    engine: AsyncEngine, client: Client, llm: FakeOpenAI, pages: str, ai_settings: Settings
) -> None:
    def slow(request: RecordedRequest) -> Reply:
        reply = summarising_responder(request)
        reply.delay = 0.2
        return reply

    llm.responder = slow
    llm.max_in_flight = 0
    user = await add_user(engine)
    sessions = [
        await add_processing_session(
            engine, user, [f"{pages}/article/{s * 10 + n}" for n in range(4)]
        )
        for s in range(2)
    ]
    limited = ai_settings.model_copy(update={"ai_max_concurrency": 3})
    async for worker in running_workers(client, engine, limited):
        results = await asyncio.gather(*(process(client, worker, s) for s in sessions))

    assert [r.outcome for r in results] == ["completed", "completed"]
    assert len(llm.requests) == 10
    assert llm.max_in_flight == 3


async def test_500_and_malformed_output_are_retried_to_success(
    engine: AsyncEngine, client: Client, ai_worker: Worker, llm: FakeOpenAI, pages: str
) -> None:
    user = await add_user(engine)
    session = await add_processing_session(engine, user, [f"{pages}/article/3"])
    llm.script(Reply.error(500, retry_after=0), Reply.text("{not json"))

    result = await process(client, ai_worker, session)

    assert result.outcome == "completed"
    assert len(llm.requests_for("page_summary")) == 3
    assert result.usage.requests == 3, "the re-ask and the answer count; the 500 is not billed"


async def test_rejected_credentials_fail_the_session_without_retrying(
    engine: AsyncEngine, client: Client, ai_worker: Worker, llm: FakeOpenAI, pages: str
) -> None:
    user = await add_user(engine)
    session = await add_processing_session(engine, user, [f"{pages}/article/0"])
    llm.script(Reply.error(401, message="Incorrect API key provided"))

    await process(client, ai_worker, session)

    status, reason = await session_row(engine, session)
    assert status == "failed"
    assert reason is not None and "HTTP 401" in reason and "OPENAI_API_KEY" in reason
    assert len(llm.requests) == 1


async def test_offline_provider_builds_a_mind_map_without_network(
    engine: AsyncEngine, client: Client, pages: str, settings: Settings
) -> None:
    offline = settings.model_copy(
        update={"openai_api_key": None, "crawler_allowed_hosts": ["127.0.0.1"]}
    )
    user = await add_user(engine)
    session = await add_processing_session(
        engine, user, [f"{pages}/article/0", f"{pages}/article/1", f"{pages}/article/5"]
    )
    async for worker in running_workers(client, engine, offline):
        result = await process(client, worker, session)

    assert result.outcome == "completed" and result.usage.requests == 0
    (mind_map,) = await rows(engine, "SELECT central_topic, data, generator FROM mind_maps")
    assert mind_map.generator == "offline-extractive"
    assert mind_map.central_topic == "Memory research"
    covered = {url for branch in mind_map.data["branches"] for url in branch["page_urls"]}
    assert len(covered) == 3
    (summary,) = await rows(
        engine, "SELECT summary FROM url_summaries WHERE url = :u", u=f"{pages}/article/1"
    )
    assert "forgetting curve" in summary.summary.lower()


async def test_two_sweeps_at_once_process_each_session_once(
    engine: AsyncEngine, client: Client, ai_worker: Worker, llm: FakeOpenAI, pages: str
) -> None:
    user = await add_user(engine)
    sessions = [
        await add_processing_session(engine, user, [f"{pages}/article/{n}", f"{pages}/article/4"])
        for n in range(4)
    ]
    await add_processing_session(engine, user, [])
    sweeps = [
        client.execute_workflow(
            AiProcessing.run,
            AiProcessingInput(batch_size=2),
            id=f"sweep-{n}-{uuid.uuid4().hex[:6]}",
            task_queue=ai_worker.task_queue,
        )
        for n in range(2)
    ]
    results: list[AiProcessingResult] = await asyncio.gather(*sweeps)

    assert sum(r.workflows_started for r in results) >= 5
    for session in sessions:
        handle = client.get_workflow_handle(
            session_workflow_id(session), result_type=ProcessSessionResult
        )
        assert (await handle.result()).outcome in ("completed", "skipped")
        description = await handle.describe()
        assert description.typed_search_attributes.get(SESSION_ID) == session
        assert await description.static_summary() == f"Session {session} of user {user}: 2 pages"
    statuses = await rows(engine, "SELECT status, count(*) AS n FROM sessions GROUP BY status")
    assert {r.status: r.n for r in statuses} == {"completed": 4, "failed": 1}
    assert len(await rows(engine, "SELECT 1 FROM mind_maps")) == 4
    assert len(await rows(engine, "SELECT 1 FROM notifications")) == 5
    assert len(llm.requests_for("mind_map")) == 4
    # Five distinct URLs, each summarised once (then cached), whatever the interleaving.
    assert len(llm.requests_for("page_summary")) <= 5 + 3


async def test_starting_now_leaves_a_running_workflow_alone(
    engine: AsyncEngine, client: Client, ai_worker: Worker, llm: FakeOpenAI, pages: str
) -> None:
    user = await add_user(engine)
    session = await add_processing_session(engine, user, [f"{pages}/article/0"])
    done = await add_processing_session(engine, user, [f"{pages}/article/1"])
    await process(client, ai_worker, done)
    gate = threading.Event()
    llm.script(Reply(gate=gate))

    queue = ai_worker.task_queue
    assert await process_session_now(client, engine, session_id=session, task_queue=queue)
    await llm.wait_for_requests(2)
    assert not await process_session_now(client, engine, session_id=session, task_queue=queue)
    gate.set()
    handle = client.get_workflow_handle(
        session_workflow_id(session), result_type=ProcessSessionResult
    )
    assert (await handle.result()).outcome == "completed"
    with pytest.raises(SessionNotWaitingError, match="is completed"):
        await process_session_now(client, engine, session_id=done, task_queue=queue)
    assert len(await rows(engine, "SELECT 1 FROM notifications")) == 2


async def test_cli_starts_a_session_and_reports_its_outcome(
    engine: AsyncEngine,
    client: Client,
    ai_worker: Worker,
    ai_settings: Settings,
    pages: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    user = await add_user(engine)
    session = await add_processing_session(engine, user, [f"{pages}/article/0"])

    assert await sessions_cli.process(ai_settings, session, wait=True) == 0
    with pytest.raises(SessionNotWaitingError, match=f"session {session} is completed, not"):
        await sessions_cli.process(ai_settings, session, wait=False)

    out = capsys.readouterr().out
    assert f"session-{session} started" in out and f"session-{session} completed" in out


async def test_the_ai_worker_closes_its_connection_pools_when_it_stops(
    engine: AsyncEngine, client: Client, ai_settings: Settings, pages: str
) -> None:
    deps = Dependencies(settings=ai_settings, engine=engine, temporal=client)
    queue = build_ai_activities(deps)
    ai = create_ai_worker(client, deps, queue, ai_settings.task_queue)
    session = await add_processing_session(engine, await add_user(engine), [f"{pages}/article/0"])
    async with ai, create_worker(client, deps) as main:
        assert (await process(client, main, session)).outcome == "completed"
        assert len(queue.pools) == 2 and not any(pool.is_closed for pool in queue.pools)
    assert all(pool.is_closed for pool in queue.pools)
