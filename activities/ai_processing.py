"""Activities of the ai-processing job.

`SessionProcessingActivities` (main task queue): the sweep, loading a session, its final state.
`SessionAiActivities` (the AI task queue): reading and summarising a session's pages, building
the mind map; LLM requests capped at AI_MAX_CONCURRENCY per worker process.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from temporalio import activity
from temporalio.client import Client
from temporalio.converter import value_to_type

from activities.heartbeats import heartbeating
from activities.interfaces import implements
from activities.llm_errors import as_application_error, llm_errors_as_application_errors
from learning_platform.ai.llm import LlmPermanentError, LlmRetryableError
from learning_platform.core.group_commit import GroupCommit
from learning_platform.core.tracing import TRACER
from learning_platform.crawler.fetch import Crawler, PageUnavailableError
from learning_platform.jobs.ai_processing import contracts
from learning_platform.jobs.ai_processing import queries as session_processing
from learning_platform.jobs.ai_processing.ai import SessionAi, SummarizedPage
from learning_platform.jobs.ai_processing.contracts import (
    BuildMindMapParams,
    CompleteSessionParams,
    CompleteStoredSessionParams,
    FailSessionParams,
    MindMapResult,
    MindMapStored,
    PageProgress,
    PageRef,
    PageSummaryResult,
    ProcessSessionInput,
    SessionIdParams,
    SessionPageCounts,
    SessionPagesResult,
    SessionState,
    SessionWork,
    StartSessionWorkflowsParams,
    StartSessionWorkflowsResult,
    SummarizeProgress,
    SummarizeSessionPagesParams,
)
from learning_platform.jobs.ai_processing.starters import start_session_workflow
from learning_platform.jobs.contracts import TokenUsage

log = logging.getLogger(__name__)

FAILED_PAGES_LISTED = 3

# Starts in flight at once during a sweep: enough to hide round trips, gentle on the server.
_PARALLEL_STARTS = 20


def _finished_pages(heartbeat_details: Sequence[Any]) -> dict[str, PageSummaryResult]:
    """The pages an earlier attempt finished, from its last heartbeat."""
    if not heartbeat_details:
        return {}
    progress: SessionPagesResult = value_to_type(SessionPagesResult, heartbeat_details[0])
    return {page.url: page for page in progress.pages}


def _resumed_pages(
    heartbeat_details: Sequence[Any], pages: list[PageRef]
) -> dict[str, PageSummaryResult]:
    """The pages an earlier attempt of summarize_session finished, from its last heartbeat
    (page indexes and outcomes: the heartbeat is in the history, URLs are not)."""
    if not heartbeat_details:
        return {}
    progress: SummarizeProgress = value_to_type(SummarizeProgress, heartbeat_details[0])
    return {
        pages[done.index].url: PageSummaryResult(
            pages[done.index].url, "", done.outcome, usage=done.usage
        )
        for done in progress.pages
        if done.index < len(pages)
    }


def _progress(pages: list[PageRef], done: dict[str, PageSummaryResult]) -> SummarizeProgress:
    return SummarizeProgress(
        [
            PageProgress(index, done[page.url].outcome, done[page.url].usage)
            for index, page in enumerate(pages)
            if page.url in done
        ]
    )


def _total_usage(pages: Sequence[PageSummaryResult]) -> TokenUsage:
    return sum((page.usage for page in pages), TokenUsage())


async def _with_failed_pages(conn: AsyncConnection, session_id: int, reason: str) -> str:
    """`reason` with the first failed pages and their errors, for the user (kept out of the
    workflow's history, where the reason travels without them)."""
    listed, total = await session_processing.failed_pages(conn, session_id, FAILED_PAGES_LISTED)
    if not listed:
        return reason
    details = "; ".join(f"{url}: {error}" for url, error in listed)
    more = total - len(listed)
    return f"{reason} ({details}{f'; and {more} more' if more > 0 else ''})"


@dataclass(frozen=True, eq=False)
class SessionProcessingActivities:
    engine: AsyncEngine
    temporal: Client
    task_queue: str

    @implements(contracts.AiProcessingActivities.start_session_workflows)
    async def start_session_workflows(
        self, params: StartSessionWorkflowsParams
    ) -> StartSessionWorkflowsResult:
        """One batch of processing sessions → one workflow each (running ones left alone)."""
        async with self.engine.connect() as conn:
            waiting = await session_processing.waiting_sessions(
                conn, after_id=params.after_session_id, limit=params.limit
            )
        gate = asyncio.Semaphore(_PARALLEL_STARTS)

        async def start(session: session_processing.WaitingSession) -> bool:
            async with gate:
                return await start_session_workflow(
                    self.temporal,
                    session_id=session.id,
                    user_id=session.user_id,
                    page_count=session.page_count,
                    task_queue=self.task_queue,
                )

        started = sum(await asyncio.gather(*(start(s) for s in waiting)))
        return StartSessionWorkflowsResult(
            last_session_id=waiting[-1].id if waiting else None,
            found=len(waiting),
            started=started,
            already_running=len(waiting) - started,
        )

    @implements(contracts.AiProcessingActivities.load_session_work)
    async def load_session_work(self, params: ProcessSessionInput) -> SessionWork | None:
        if (session := await self._session_pages(params.session_id)) is None:
            return None
        pages = [PageRef(url=page.url, title=page.title) for page in session.pages]
        return SessionWork(session.id, session.user_id, session.title, session.status, pages)

    @implements(contracts.AiProcessingActivities.load_session_state)
    async def load_session_state(self, params: ProcessSessionInput) -> SessionState | None:
        if (session := await self._session_pages(params.session_id)) is None:
            return None
        return SessionState(session.id, session.user_id, session.status, len(session.pages))

    async def _session_pages(self, session_id: int) -> session_processing.SessionPages | None:
        async with self.engine.connect() as conn:
            return await session_processing.session_pages(conn, session_id)

    @implements(contracts.AiProcessingActivities.complete_session_with_stored_map)
    async def complete_session_with_stored_map(self, params: CompleteStoredSessionParams) -> bool:
        async with self.engine.begin() as conn:
            return await session_processing.complete_session_with_stored_map(
                conn, session_id=params.session_id, usage=params.usage
            )

    @implements(contracts.AiProcessingActivities.complete_session)
    async def complete_session(self, params: CompleteSessionParams) -> bool:
        async with self.engine.begin() as conn:
            return await session_processing.complete_session(
                conn, session_id=params.session_id, mind_map=params.mind_map, usage=params.usage
            )

    @implements(contracts.AiProcessingActivities.fail_session)
    async def fail_session(self, params: FailSessionParams) -> bool:
        async with self.engine.begin() as conn:
            reason = params.reason
            if params.list_failed_pages:
                reason = await _with_failed_pages(conn, params.session_id, reason)
            return await session_processing.fail_session(
                conn, session_id=params.session_id, reason=reason, usage=params.usage
            )


@dataclass(eq=False)
class SessionAiActivities:
    """One instance per worker process: at most `llm_concurrency` LLM requests at once, however
    many pages and sessions are in progress, and at most twice as many pages in progress (read,
    waiting for the LLM or being stored), so pages are read shortly before their turn and a
    burst of sessions does not swamp the event loop the workflows share.

    Finished pages of all its sessions are written in groups (`finished_pages`: one
    transaction, one statement for the pages that finished within 20 ms of each other); a page
    counts as finished (in `done`, hence in a heartbeat) only once its group committed. The
    worker's plugin closes the writer when the AI queue's worker stops (activities/registry.py).
    """

    engine: AsyncEngine
    ai: SessionAi
    crawler: Crawler
    llm_slots: asyncio.Semaphore
    llm_concurrency: int
    page_slots: asyncio.Semaphore = field(init=False)
    finished_pages: GroupCommit[session_processing.FinishedPage] = field(init=False)

    def __post_init__(self) -> None:
        self.page_slots = asyncio.Semaphore(2 * self.llm_concurrency)
        self.finished_pages = GroupCommit(
            self.engine,
            functools.partial(session_processing.store_finished_pages, generator=self.ai.generator),
            name="finished pages",
        )

    @implements(contracts.AiProcessingActivities.summarize_session_pages)
    async def summarize_session_pages(
        self, params: SummarizeSessionPagesParams
    ) -> SessionPagesResult:
        """Each page's summary from the cache, or read and summarised now (then cached), all
        pages at once. A finished page is stored as it completes and the heartbeats carry the
        finished pages, so a retry (after a rate limit, say) redoes only the pages that did not
        finish; one a lost worker finished after its last beat comes from the cache.

        A page that cannot be read, or that the LLM refuses for good, is recorded as failed
        and returned as such: the session goes on with its other pages.
        """
        done = _finished_pages(activity.info().heartbeat_details)
        async with self.engine.begin() as conn:
            await self._take_cached(conn, params.session_id, params.pages, done)
        await self._summarize_pages(
            params.session_id,
            params.pages,
            done,
            progress=lambda: SessionPagesResult(list(done.values())),
        )
        return SessionPagesResult([done[page.url] for page in params.pages])

    @implements(contracts.AiProcessingActivities.summarize_session)
    async def summarize_session(self, params: SessionIdParams) -> SessionPageCounts:
        """summarize_session_pages with the pages read from the database and counts returned:
        the session's URLs, titles and summaries stay out of the workflow's history."""
        async with self.engine.begin() as conn:
            session = await session_processing.session_pages(conn, params.session_id)
            pages = [PageRef(p.url, p.title) for p in session.pages] if session else []
            done = _resumed_pages(activity.info().heartbeat_details, pages)
            await self._take_cached(conn, params.session_id, pages, done)
        await self._summarize_pages(
            params.session_id, pages, done, progress=lambda: _progress(pages, done)
        )
        outcomes = [done[page.url].outcome for page in pages]
        return SessionPageCounts(
            summarized=outcomes.count("summarized"),
            cached=outcomes.count("cached"),
            failed=outcomes.count("failed"),
            usage=_total_usage(list(done.values())),
        )

    async def _summarize_pages(
        self,
        session_id: int,
        pages: list[PageRef],
        done: dict[str, PageSummaryResult],
        progress: Callable[[], object],
    ) -> None:
        """Every page not in `done` into it, concurrently; each beat carries `progress()`."""
        waiting = [(index, page) for index, page in enumerate(pages) if page.url not in done]
        async with heartbeating(details=lambda: [progress()]):
            outcomes = await asyncio.gather(
                *(self._summarize_page(session_id, index, page, done) for index, page in waiting),
                return_exceptions=True,
            )
        errors = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        if errors:
            # The retry resumes from every page finished so far, not from the last beat.
            activity.heartbeat(progress())
            raise errors[0]

    async def _take_cached(
        self,
        conn: AsyncConnection,
        session_id: int,
        pages: list[PageRef],
        done: dict[str, PageSummaryResult],
    ) -> None:
        """The pages not in `done` whose summary is cached into it, recorded as cached (in the
        caller's transaction)."""
        urls = [page.url for page in pages if page.url not in done]
        cached = await session_processing.cached_summaries(conn, urls, self.ai.generator)
        await session_processing.store_finished_pages(
            conn,
            [session_processing.FinishedPage(session_id, url, "cached") for url in cached],
            generator=self.ai.generator,
        )
        for url, summary in cached.items():
            done[url] = PageSummaryResult(
                url, summary.title, "cached", summary.summary, summary.key_points
            )

    async def _summarize_page(
        self, session_id: int, index: int, page: PageRef, done: dict[str, PageSummaryResult]
    ) -> None:
        # A page is named by its session and its position among the session's pages (as in
        # the heartbeats), never by its URL: spans and logs leave this process, and a URL
        # (host included) is the user's browsing history. page_crawls has the URL and error.
        attributes = {"session.id": session_id, "page.index": index}
        async with self.page_slots:
            with TRACER.start_as_current_span("summarize page", attributes=attributes):
                await self._read_and_summarize(session_id, index, page, done)

    async def _read_and_summarize(
        self, session_id: int, index: int, page: PageRef, done: dict[str, PageSummaryResult]
    ) -> None:
        try:
            with TRACER.start_as_current_span("crawl", attributes={"page.index": index}):
                fetched = await self.crawler.fetch(page.url)
        except PageUnavailableError as exc:
            # The crawler turns everything a page can cause into this (crawler/fetch.py).
            reason = exc.reason
            await self._record(session_id, page.url, "failed", exc.http_status, reason)
            # Not the reason: it can name the page's host ("cannot resolve host ...").
            activity.logger.info(
                "page skipped",
                extra={
                    "session_id": session_id,
                    "page_index": index,
                    "http_status": exc.http_status,
                    "error": type(exc).__name__,
                },
            )
            done[page.url] = PageSummaryResult(page.url, page.title, "failed", error=reason)
            return
        try:
            async with self.llm_slots:
                summary, usage = await self.ai.summarize_page(
                    url=page.url, title=fetched.title or page.title, text=fetched.text
                )
        except LlmRetryableError as exc:
            raise as_application_error(exc) from exc
        except LlmPermanentError as exc:
            error = f"could not be summarised: {exc}"
            await self._record(session_id, page.url, "failed", error=error)
            done[page.url] = PageSummaryResult(page.url, page.title, "failed", error=str(exc))
            return
        result = session_processing.CachedSummary(
            summary.title or fetched.title, summary.summary, summary.key_points
        )
        await self.finished_pages.write(
            session_processing.FinishedPage(session_id, page.url, "summarized", summary=result)
        )
        done[page.url] = PageSummaryResult(
            page.url, result.title, "summarized", result.summary, result.key_points,
            usage=usage,
        )  # fmt: skip

    async def _record(
        self,
        session_id: int,
        url: str,
        outcome: str,
        http_status: int | None = None,
        error: str | None = None,
    ) -> None:
        await self.finished_pages.write(
            session_processing.FinishedPage(session_id, url, outcome, http_status, error)
        )

    @implements(contracts.AiProcessingActivities.build_session_mind_map)
    async def build_session_mind_map(self, params: SessionIdParams) -> MindMapStored:
        """build_mind_map from the session's summaries in the database, the map stored there
        (complete_session_with_stored_map completes the session): only usage counts return."""
        async with self.engine.connect() as conn:
            if await session_processing.stored_central_topic(conn, params.session_id):
                return MindMapStored(TokenUsage())  # an earlier attempt stored it
            session = await session_processing.session_pages(conn, params.session_id)
            urls = [page.url for page in session.pages] if session else []
            cached = await session_processing.cached_summaries(conn, urls, self.ai.generator)
        pages = [
            SummarizedPage(url, cached[url].title, cached[url].summary, cached[url].key_points)
            for url in urls
            if url in cached
        ]
        mind_map = await self._build(session.title if session else "", pages)
        async with self.engine.begin() as conn:
            await session_processing.store_mind_map(conn, params.session_id, mind_map)
        return MindMapStored(mind_map.usage)

    @implements(contracts.AiProcessingActivities.build_mind_map)
    async def build_mind_map(self, params: BuildMindMapParams) -> MindMapResult:
        pages = [
            SummarizedPage(page.url, page.title, page.summary, page.key_points)
            for page in params.pages
        ]
        return await self._build(params.session_title, pages)

    async def _build(self, session_title: str, pages: list[SummarizedPage]) -> MindMapResult:
        async with heartbeating(), self.llm_slots:
            with llm_errors_as_application_errors():
                mind_map, usage = await self.ai.build_mind_map(
                    session_title=session_title, pages=pages
                )
        return MindMapResult(
            central_topic=mind_map.central_topic,
            data=mind_map.to_dict(),
            generator=self.ai.generator,
            usage=usage,
        )
