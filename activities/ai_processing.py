"""Activities of the ai-processing job.

`SessionProcessingActivities` (main task queue): the sweep, loading a session, its final state.
`SessionAiActivities` (the AI task queue, concurrency-capped): reading and summarising a page,
building the mind map.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.client import Client

from activities.heartbeats import heartbeating
from activities.llm_errors import as_application_error, llm_errors_as_application_errors
from contracts.ai_processing import (
    BUILD_MIND_MAP,
    COMPLETE_SESSION,
    FAIL_SESSION,
    LOAD_SESSION_WORK,
    START_SESSION_WORKFLOWS,
    SUMMARIZE_PAGE,
    BuildMindMapParams,
    CompleteSessionParams,
    FailSessionParams,
    LlmUsageCounts,
    MindMapResult,
    PageRef,
    PageSummaryResult,
    ProcessSessionInput,
    SessionUsage,
    SessionWork,
    StartSessionWorkflowsParams,
    StartSessionWorkflowsResult,
    SummarizePageParams,
)
from learning_platform import session_processing
from learning_platform.ai.llm import LlmPermanentError, LlmRetryableError, LlmUsage
from learning_platform.ai.session_ai import SessionAi, SummarizedPage
from learning_platform.crawler import Crawler, PageUnavailableError, crawl_failure_reason
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
    def __init__(self, engine: AsyncEngine, ai: SessionAi, crawler: Crawler) -> None:
        self._engine = engine
        self._ai = ai
        self._crawler = crawler

    @activity.defn(name=SUMMARIZE_PAGE)
    async def summarize_page(self, params: SummarizePageParams) -> PageSummaryResult:
        """The page's summary from the cache, or read and summarised now (then cached).

        A page that cannot be read is recorded as failed and returned as such: retrying would
        not help and the session goes on with its other pages.
        """
        async with self._engine.connect() as conn:
            cached = await session_processing.cached_summary(conn, params.url, self._ai.generator)
        if cached is not None:
            await self._record(params, "cached")
            return PageSummaryResult(
                params.url, cached.title, "cached", cached.summary, cached.key_points
            )
        async with heartbeating():
            try:
                page = await self._crawler.fetch(params.url)
            except (PageUnavailableError, httpx.HTTPError) as exc:
                return await self._failed(params, crawl_failure_reason(exc), exc)
            try:
                summary, usage = await self._ai.summarize_page(
                    url=params.url, title=page.title or params.title, text=page.text
                )
            except LlmRetryableError as exc:
                raise as_application_error(exc) from exc
            except LlmPermanentError as exc:
                await self._record(params, "failed", error=f"could not be summarised: {exc}")
                raise as_application_error(exc) from exc
        result = session_processing.CachedSummary(
            summary.title or page.title, summary.summary, summary.key_points
        )
        async with self._engine.begin() as conn:
            await session_processing.store_summary(conn, params.url, self._ai.generator, result)
            await session_processing.record_page_outcome(
                conn, session_id=params.session_id, url=params.url, outcome="summarized"
            )
        return PageSummaryResult(
            params.url, result.title, "summarized", result.summary, result.key_points,
            usage=_counts(usage),
        )  # fmt: skip

    async def _failed(
        self, params: SummarizePageParams, reason: str, exc: Exception
    ) -> PageSummaryResult:
        status = exc.http_status if isinstance(exc, PageUnavailableError) else None
        await self._record(params, "failed", status, reason)
        activity.logger.info("page skipped", extra={"url": params.url, "reason": reason})
        return PageSummaryResult(params.url, params.title, "failed", error=reason)

    async def _record(
        self,
        params: SummarizePageParams,
        outcome: str,
        http_status: int | None = None,
        error: str | None = None,
    ) -> None:
        async with self._engine.begin() as conn:
            await session_processing.record_page_outcome(
                conn,
                session_id=params.session_id,
                url=params.url,
                outcome=outcome,
                http_status=http_status,
                error=error,
            )

    @activity.defn(name=BUILD_MIND_MAP)
    async def build_mind_map(self, params: BuildMindMapParams) -> MindMapResult:
        pages = [
            SummarizedPage(page.url, page.title, page.summary, page.key_points)
            for page in params.pages
        ]
        async with heartbeating():
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
