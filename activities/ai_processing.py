"""Activities of the ai-processing job.

`SessionProcessingActivities` (main task queue): the sweep, loading a session, its final state.
`SessionAiActivities` (the AI task queue): reading and summarising a session's pages, building
the mind map; LLM requests capped at AI_MAX_CONCURRENCY per worker process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.client import Client
from temporalio.converter import value_to_type

from activities.heartbeats import heartbeating
from activities.llm_errors import as_application_error, llm_errors_as_application_errors
from contracts.ai_processing import (
    BUILD_MIND_MAP,
    COMPLETE_SESSION,
    FAIL_SESSION,
    LOAD_SESSION_WORK,
    START_SESSION_WORKFLOWS,
    SUMMARIZE_SESSION_PAGES,
    BuildMindMapParams,
    CompleteSessionParams,
    FailSessionParams,
    LlmUsageCounts,
    MindMapResult,
    PageRef,
    PageSummaryResult,
    ProcessSessionInput,
    SessionPagesResult,
    SessionUsage,
    SessionWork,
    StartSessionWorkflowsParams,
    StartSessionWorkflowsResult,
    SummarizeSessionPagesParams,
)
from learning_platform import session_processing
from learning_platform.ai.llm import LlmPermanentError, LlmRetryableError, LlmUsage
from learning_platform.ai.session_ai import SessionAi, SummarizedPage
from learning_platform.crawler import Crawler, PageUnavailableError
from learning_platform.session_workflows import start_session_workflow

log = logging.getLogger(__name__)

# Starts in flight at once during a sweep: enough to hide round trips, gentle on the server.
_PARALLEL_STARTS = 20


def _counts(usage: LlmUsage) -> LlmUsageCounts:
    return LlmUsageCounts(
        model=usage.model,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        requests=usage.requests,
    )


def _finished_pages(heartbeat_details: Sequence[Any]) -> dict[str, PageSummaryResult]:
    """The pages an earlier attempt finished, from its last heartbeat."""
    if not heartbeat_details:
        return {}
    progress: SessionPagesResult = value_to_type(SessionPagesResult, heartbeat_details[0])
    return {page.url: page for page in progress.pages}


def _usage_row(usage: SessionUsage) -> session_processing.UsageCounts:
    return session_processing.UsageCounts(**asdict(usage))


class SessionProcessingActivities:
    def __init__(self, engine: AsyncEngine, temporal: Client, task_queue: str) -> None:
        self._engine = engine
        self._temporal = temporal
        self._task_queue = task_queue

    @activity.defn(name=START_SESSION_WORKFLOWS)
    async def start_session_workflows(
        self, params: StartSessionWorkflowsParams
    ) -> StartSessionWorkflowsResult:
        """One batch of processing sessions → one workflow each (running ones left alone)."""
        async with self._engine.connect() as conn:
            waiting = await session_processing.waiting_sessions(
                conn, after_id=params.after_session_id, limit=params.limit
            )
        gate = asyncio.Semaphore(_PARALLEL_STARTS)

        async def start(session: session_processing.WaitingSession) -> bool:
            async with gate:
                return await start_session_workflow(
                    self._temporal,
                    session_id=session.id,
                    user_id=session.user_id,
                    page_count=session.page_count,
                    task_queue=self._task_queue,
                )

        started = sum(await asyncio.gather(*(start(s) for s in waiting)))
        return StartSessionWorkflowsResult(
            last_session_id=waiting[-1].id if waiting else None,
            found=len(waiting),
            started=started,
            already_running=len(waiting) - started,
        )

    @activity.defn(name=LOAD_SESSION_WORK)
    async def load_session_work(self, params: ProcessSessionInput) -> SessionWork | None:
        async with self._engine.connect() as conn:
            session = await session_processing.session_pages(conn, params.session_id)
        if session is None:
            return None
        return SessionWork(
            session_id=session.id,
            user_id=session.user_id,
            title=session.title,
            status=session.status,
            pages=[PageRef(url=page.url, title=page.title) for page in session.pages],
        )

    @activity.defn(name=COMPLETE_SESSION)
    async def complete_session(self, params: CompleteSessionParams) -> bool:
        async with self._engine.begin() as conn:
            return await session_processing.complete_session(
                conn,
                session_id=params.session_id,
                central_topic=params.mind_map.central_topic,
                mind_map=params.mind_map.data,
                generator=params.mind_map.generator,
                usage=_usage_row(params.usage),
            )

    @activity.defn(name=FAIL_SESSION)
    async def fail_session(self, params: FailSessionParams) -> bool:
        async with self._engine.begin() as conn:
            return await session_processing.fail_session(
                conn,
                session_id=params.session_id,
                reason=params.reason,
                usage=_usage_row(params.usage),
            )


class SessionAiActivities:
    """One instance per worker process: at most `llm_concurrency` LLM requests at once, however
    many pages and sessions are in progress, and at most twice as many pages in progress (read,
    waiting for the LLM or being stored), so pages are read shortly before their turn and a
    burst of sessions does not swamp the event loop the workflows share."""

    def __init__(
        self,
        engine: AsyncEngine,
        ai: SessionAi,
        crawler: Crawler,
        llm_slots: asyncio.Semaphore,
        llm_concurrency: int,
    ) -> None:
        self._engine = engine
        self._ai = ai
        self._crawler = crawler
        self._llm_slots = llm_slots
        self._page_slots = asyncio.Semaphore(2 * llm_concurrency)

    @activity.defn(name=SUMMARIZE_SESSION_PAGES)
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
        await self._take_cached(params, done)
        waiting = [page for page in params.pages if page.url not in done]
        async with heartbeating(details=lambda: [SessionPagesResult(list(done.values()))]):
            outcomes = await asyncio.gather(
                *(self._summarize_page(params.session_id, page, done) for page in waiting),
                return_exceptions=True,
            )
        errors = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        if errors:
            # The retry resumes from every page finished so far, not from the last beat.
            activity.heartbeat(SessionPagesResult(list(done.values())))
            raise errors[0]
        return SessionPagesResult([done[page.url] for page in params.pages])

    async def _take_cached(
        self, params: SummarizeSessionPagesParams, done: dict[str, PageSummaryResult]
    ) -> None:
        urls = [page.url for page in params.pages if page.url not in done]
        async with self._engine.begin() as conn:
            cached = await session_processing.cached_summaries(conn, urls, self._ai.generator)
            await session_processing.record_page_outcomes(
                conn,
                params.session_id,
                [session_processing.PageOutcome(url, "cached") for url in cached],
            )
        for url, summary in cached.items():
            done[url] = PageSummaryResult(
                url, summary.title, "cached", summary.summary, summary.key_points
            )

    async def _summarize_page(
        self, session_id: int, page: PageRef, done: dict[str, PageSummaryResult]
    ) -> None:
        async with self._page_slots:
            await self._read_and_summarize(session_id, page, done)

    async def _read_and_summarize(
        self, session_id: int, page: PageRef, done: dict[str, PageSummaryResult]
    ) -> None:
        try:
            fetched = await self._crawler.fetch(page.url)
        except PageUnavailableError as exc:
            # The crawler turns everything a page can cause into this (learning_platform.crawler).
            reason = exc.reason
            await self._record(session_id, page.url, "failed", exc.http_status, reason)
            activity.logger.info("page skipped", extra={"url": page.url, "reason": reason})
            done[page.url] = PageSummaryResult(page.url, page.title, "failed", error=reason)
            return
        try:
            async with self._llm_slots:
                summary, usage = await self._ai.summarize_page(
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
        async with self._engine.begin() as conn:
            await session_processing.store_summary(
                conn, session_id, page.url, self._ai.generator, result
            )
        done[page.url] = PageSummaryResult(
            page.url, result.title, "summarized", result.summary, result.key_points,
            usage=_counts(usage),
        )  # fmt: skip

    async def _record(
        self,
        session_id: int,
        url: str,
        outcome: str,
        http_status: int | None = None,
        error: str | None = None,
    ) -> None:
        async with self._engine.begin() as conn:
            await session_processing.record_page_outcomes(
                conn, session_id, [session_processing.PageOutcome(url, outcome, http_status, error)]
            )

    @activity.defn(name=BUILD_MIND_MAP)
    async def build_mind_map(self, params: BuildMindMapParams) -> MindMapResult:
        pages = [
            SummarizedPage(page.url, page.title, page.summary, page.key_points)
            for page in params.pages
        ]
        async with heartbeating(), self._llm_slots:
            with llm_errors_as_application_errors():
                mind_map, usage = await self._ai.build_mind_map(
                    session_title=params.session_title, pages=pages
                )
        return MindMapResult(
            central_topic=mind_map.central_topic,
            data=mind_map.to_dict(),
            generator=self._ai.generator,
            usage=_counts(usage),
        )
