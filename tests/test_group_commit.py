"""The AI worker's group commit of finished pages, on real PostgreSQL: pages of several sessions
finishing together are written in one transaction (their rows share an xmin), a failing group
fails each of its waiters and the next group commits, a cancelled waiter leaves the others'
group alone, and the AI queue's worker leaves no writer task behind when it stops."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from temporalio.client import Client

from activities.registry import Dependencies, build_ai_activities
from learning_platform.core.group_commit import GroupCommit, GroupCommitStoppedError
from learning_platform.core.settings import Settings
from learning_platform.jobs.ai_processing.contracts import ProcessSessionInput
from learning_platform.jobs.ai_processing.queries import (
    CachedSummary,
    FinishedPage,
    store_finished_pages,
)
from tests.ai_processing_helpers import add_processing_session, rows, summarising_responder
from tests.factories import add_user
from tests.fake_openai import FakeOpenAI
from tests.pages_server import serving_pages
from worker import create_ai_worker, create_worker
from workflows.ai_processing import ProcessSession

GENERATOR = "test-model"
# Bounds every wait on a waiter: a writer that never resumes one fails the test, not hangs it.
WITHIN = 30

WriteGroup = Callable[[AsyncConnection, list[FinishedPage]], Awaitable[None]]
store = functools.partial(store_finished_pages, generator=GENERATOR)


def summarized(session_id: int, url: str, text: str = "a summary") -> FinishedPage:
    return FinishedPage(
        session_id, url, "summarized", summary=CachedSummary(f"title of {url}", text, ["point"])
    )


async def sessions(engine: AsyncEngine, count: int) -> list[int]:
    user = await add_user(engine)
    return [await add_processing_session(engine, user, []) for _ in range(count)]


def writer(
    engine: AsyncEngine, write_group: WriteGroup = store, max_rows: int = 64
) -> GroupCommit[FinishedPage]:
    return GroupCommit(engine, write_group, name="test pages", max_rows=max_rows)


async def crawl_xmins(engine: AsyncEngine) -> dict[tuple[int, str], str]:
    found = await rows(engine, "SELECT session_id, url, xmin::text AS xmin FROM page_crawls")
    return {(row.session_id, row.url): row.xmin for row in found}


async def test_pages_of_several_sessions_finishing_together_commit_in_one_transaction(
    engine: AsyncEngine,
) -> None:
    first, second, third = await sessions(engine, 3)
    pages = [
        summarized(first, "https://a.example/1"),
        summarized(second, "https://b.example/1"),
        FinishedPage(second, "https://b.example/2", "failed", 404, "HTTP 404"),
        summarized(third, "https://c.example/1"),
        summarized(third, "https://c.example/2"),
    ]
    pages_writer = writer(engine)
    await asyncio.wait_for(asyncio.gather(*(pages_writer.write(p) for p in pages)), WITHIN)

    crawls = await crawl_xmins(engine)
    assert set(crawls) == {(p.session_id, p.url) for p in pages}
    summaries = await rows(engine, "SELECT url, xmin::text AS xmin FROM url_summaries")
    assert {s.url for s in summaries} == {p.url for p in pages if p.summary is not None}
    assert len(set(crawls.values()) | {s.xmin for s in summaries}) == 1
    await pages_writer.aclose()
    assert not pages_writer.running
    with pytest.raises(GroupCommitStoppedError):
        await pages_writer.write(summarized(first, "https://a.example/2"))


async def test_a_group_takes_at_most_its_cap_of_rows(engine: AsyncEngine) -> None:
    (session,) = await sessions(engine, 1)
    pages_writer = writer(engine, max_rows=2)
    urls = [f"https://a.example/{n}" for n in range(5)]
    await asyncio.wait_for(
        asyncio.gather(*(pages_writer.write(summarized(session, url)) for url in urls)), WITHIN
    )
    await pages_writer.aclose()

    crawls = await crawl_xmins(engine)
    groups = sorted(list(crawls.values()).count(xmin) for xmin in set(crawls.values()))
    assert groups == [1, 2, 2]


async def test_a_failing_group_fails_each_of_its_waiters_and_the_next_group_commits(
    engine: AsyncEngine,
) -> None:
    first, second = await sessions(engine, 2)
    pages_writer = writer(engine)
    doomed = [
        summarized(first, "https://a.example/1"),
        FinishedPage(second, "https://b.example/1", "lost"),  # breaks outcome_known
        summarized(second, "https://b.example/2"),
    ]
    outcomes = await asyncio.wait_for(
        asyncio.gather(*(pages_writer.write(p) for p in doomed), return_exceptions=True), WITHIN
    )

    assert all(isinstance(outcome, IntegrityError) for outcome in outcomes), outcomes
    assert await crawl_xmins(engine) == {}
    assert await rows(engine, "SELECT 1 FROM url_summaries") == []
    await asyncio.wait_for(pages_writer.write(summarized(first, "https://a.example/1")), WITHIN)
    assert set(await crawl_xmins(engine)) == {(first, "https://a.example/1")}
    await pages_writer.aclose()


async def test_a_cancelled_waiter_leaves_its_group_to_commit_for_the_others(
    engine: AsyncEngine,
) -> None:
    first, second = await sessions(engine, 2)
    writing, release = asyncio.Event(), asyncio.Event()

    async def held_until_released(conn: AsyncConnection, pages: list[FinishedPage]) -> None:
        writing.set()
        await release.wait()
        await store(conn, pages)

    pages_writer = writer(engine, held_until_released)
    pages = [
        summarized(first, "https://a.example/1"),
        summarized(second, "https://b.example/1"),
        summarized(second, "https://b.example/2"),
    ]
    waiters = [asyncio.create_task(pages_writer.write(page)) for page in pages]
    await asyncio.wait_for(writing.wait(), WITHIN)
    waiters[1].cancel()
    release.set()
    done, _ = await asyncio.wait(waiters, timeout=WITHIN)

    assert done == set(waiters)
    assert waiters[1].cancelled()
    assert waiters[0].result() is None and waiters[2].result() is None
    # The cancelled waiter's page was in the group: it is written with the others.
    crawls = await crawl_xmins(engine)
    assert set(crawls) == {(p.session_id, p.url) for p in pages}
    assert len(set(crawls.values())) == 1
    await pages_writer.aclose()


async def test_one_group_keeps_the_first_summary_and_the_latest_outcome_of_a_page(
    engine: AsyncEngine,
) -> None:
    first, second, gone = await sessions(engine, 3)
    async with engine.begin() as conn:  # deleted while its page was being summarised
        await conn.execute(text("DELETE FROM sessions WHERE id = :s"), {"s": gone})
    url = "https://a.example/shared"
    pages = [
        summarized(first, url, "first summary\x00"),
        summarized(second, url, "second summary"),
        FinishedPage(first, "https://a.example/2", "failed", 500, "HTTP 500"),
        summarized(first, "https://a.example/2", "summarised on the retry"),
        summarized(gone, "https://c.example/1"),
    ]
    async with engine.begin() as conn:
        await store(conn, pages)

    (shared,) = await rows(engine, "SELECT summary FROM url_summaries WHERE url = :u", u=url)
    assert shared.summary == "first summary"
    outcomes = await rows(engine, "SELECT session_id, url, outcome FROM page_crawls")
    assert {(o.session_id, o.url): o.outcome for o in outcomes} == {
        (first, url): "summarized",
        (second, url): "summarized",
        (first, "https://a.example/2"): "summarized",
    }


async def test_the_ai_worker_leaves_no_group_writer_task_when_it_stops(
    engine: AsyncEngine, client: Client, settings: Settings
) -> None:
    def writer_tasks() -> list[asyncio.Task[object]]:
        return [t for t in asyncio.all_tasks() if t.get_name().startswith("group commit")]

    with serving_pages() as pages, FakeOpenAI.running() as llm:
        llm.responder = summarising_responder
        ai_settings = settings.model_copy(
            update=llm.settings_update(crawler_allowed_hosts=["127.0.0.1"])
        )
        deps = Dependencies(settings=ai_settings, engine=engine, temporal=client)
        queue = build_ai_activities(deps)
        user = await add_user(engine)
        session = await add_processing_session(engine, user, [f"{pages}/article/0"])
        async with create_ai_worker(client, deps, queue, ai_settings.task_queue):
            async with create_worker(client, deps) as main:
                result = await client.execute_workflow(
                    ProcessSession.run,
                    ProcessSessionInput(session),
                    id=f"session-{session}-{main.task_queue}",
                    task_queue=main.task_queue,
                )
            assert result.outcome == "completed"
            assert len(writer_tasks()) == 1
    assert writer_tasks() == []
    (crawl,) = await rows(
        engine, "SELECT outcome FROM page_crawls WHERE session_id = :s", s=session
    )
    assert crawl.outcome == "summarized"
