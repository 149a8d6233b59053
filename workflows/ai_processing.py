"""ai-processing (the MindHit document, step 6.3): a sweeper that starts one workflow per
processing session, and that per-session workflow: pages → summaries → mind map → completed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from learning_platform.jobs.ai_processing.contracts import (
    IDS_ONLY_PATCH,
    SESSION_WORKFLOW,
    SWEEPER_WORKFLOW,
    AiProcessingActivities,
    AiProcessingInput,
    AiProcessingResult,
    BuildMindMapParams,
    CompleteSessionParams,
    CompleteStoredSessionParams,
    FailSessionParams,
    PageSummaryResult,
    ProcessSessionInput,
    ProcessSessionResult,
    SessionIdParams,
    SessionUsage,
    SessionWork,
    StartSessionWorkflowsParams,
    SummarizeSessionPagesParams,
    ai_task_queue,
)
from workflows.job_run import job_run
from workflows.retry_policies import DATABASE_RETRY, LLM_RETRY

AI_ACTIVITY_TIMEOUT = timedelta(minutes=5)
# A session's pages wait their turn for the worker's LLM slots; heartbeats, not this, notice a
# lost worker.
PAGES_ACTIVITY_TIMEOUT = timedelta(minutes=30)
# Activities heartbeat every 2 s, so a killed worker's attempt is retried after this.
AI_HEARTBEAT_TIMEOUT = timedelta(seconds=10)
MAX_REASONS_LISTED = 3
A = TypeVar("A")
R = TypeVar("R")


@workflow.defn(name=SWEEPER_WORKFLOW)
class AiProcessing:
    """Every processing session gets its own `session-<id>` workflow; batch by batch."""

    @workflow.run
    async def run(self, params: AiProcessingInput) -> AiProcessingResult:
        totals = AiProcessingResult(sessions_found=0, workflows_started=0, already_running=0)
        async with job_run("ai-processing") as run:
            after = 0
            while True:
                batch = await workflow.execute_activity(
                    AiProcessingActivities.start_session_workflows,
                    StartSessionWorkflowsParams(after_session_id=after, limit=params.batch_size),
                    start_to_close_timeout=timedelta(minutes=5),
                    retry_policy=DATABASE_RETRY,
                )
                totals.sessions_found += batch.found
                totals.workflows_started += batch.started
                totals.already_running += batch.already_running
                if batch.last_session_id is None or batch.found < params.batch_size:
                    break
                after = batch.last_session_id
            run.counts.update(
                sessions=totals.sessions_found,
                started=totals.workflows_started,
                already_running=totals.already_running,
            )
        return totals


@workflow.defn(name=SESSION_WORKFLOW)
class ProcessSession:
    @workflow.run
    async def run(self, params: ProcessSessionInput) -> ProcessSessionResult:
        # Since IDS_ONLY_PATCH the history holds ids and counts only; workflows started
        # before it replay (and finish) on the path that carried pages and summaries. Once
        # none of those runs is left: workflow.deprecate_patch, then remove _run_with_content
        # and its activities.
        if workflow.patched(IDS_ONLY_PATCH):
            return await self._run_on_ids(params.session_id)
        return await self._run_with_content(params)

    async def _run_on_ids(self, session_id: int) -> ProcessSessionResult:
        state = await _database_step(
            AiProcessingActivities.load_session_state, ProcessSessionInput(session_id)
        )
        if state is None or state.status != "processing":
            workflow.logger.info("session not processing, nothing to do", extra=_ids(session_id))
            return ProcessSessionResult(session_id=session_id, outcome="skipped")
        workflow.logger.info(
            "processing session", extra={**_ids(session_id), "pages": state.page_count}
        )
        usage = SessionUsage(pages_total=state.page_count)
        if state.page_count == 0:
            return await self._fail(session_id, _no_pages_reason([]), usage)
        # Current details (the UI's User Metadata tab, `temporal workflow metadata`) are no
        # command: nothing for replay to compare. Ids and counts only, as in the history.
        workflow.set_current_details(f"Summarising {state.page_count} pages")
        try:
            counts = await _ai_activity(
                AiProcessingActivities.summarize_session,
                SessionIdParams(session_id),
                start_to_close=PAGES_ACTIVITY_TIMEOUT,
            )
        except ActivityError as exc:
            return await self._fail(
                session_id, f"the pages could not be summarised: {_cause(exc)}", usage
            )
        usage.add(counts.usage)
        usage.pages_summarized, usage.pages_cached = counts.summarized, counts.cached
        usage.pages_failed = counts.failed
        if counts.summarized + counts.cached == 0:
            reason = f"none of the {state.page_count} visited pages could be summarised"
            return await self._fail(session_id, reason, usage, list_failed_pages=True)
        workflow.set_current_details(
            f"Building the mind map from {counts.summarized + counts.cached} pages"
        )
        try:
            stored = await _ai_activity(
                AiProcessingActivities.build_session_mind_map, SessionIdParams(session_id)
            )
        except ActivityError as exc:
            return await self._fail(
                session_id, f"the mind map could not be built: {_cause(exc)}", usage
            )
        usage.add(stored.usage)
        await _database_step(
            AiProcessingActivities.complete_session_with_stored_map,
            CompleteStoredSessionParams(session_id, usage),
        )
        workflow.set_current_details(
            f"Completed: {usage.pages_summarized} pages summarised, {usage.pages_cached} from "
            f"the cache, {usage.pages_failed} failed; {usage.requests} LLM requests"
        )
        return self._completed(session_id, usage)

    async def _run_with_content(self, params: ProcessSessionInput) -> ProcessSessionResult:
        """The path of workflows started before IDS_ONLY_PATCH (pages in the history)."""
        session_id = params.session_id
        work = await _database_step(AiProcessingActivities.load_session_work, params)
        if work is None or work.status != "processing":
            workflow.logger.info("session not processing, nothing to do", extra=_ids(session_id))
            return ProcessSessionResult(session_id=session_id, outcome="skipped")
        workflow.logger.info(
            "processing session", extra={**_ids(session_id), "pages": len(work.pages)}
        )
        usage = SessionUsage(pages_total=len(work.pages))
        try:
            pages = await self._summarize(work)
        except ActivityError as exc:
            return await self._fail(
                session_id, f"the pages could not be summarised: {_cause(exc)}", usage
            )
        for page in pages:
            usage.add(page.usage)
        usage.pages_summarized = sum(1 for p in pages if p.outcome == "summarized")
        usage.pages_cached = sum(1 for p in pages if p.outcome == "cached")
        usage.pages_failed = sum(1 for p in pages if p.outcome == "failed")
        readable = [p for p in pages if p.outcome != "failed"]
        if not readable:
            return await self._fail(session_id, _no_pages_reason(pages), usage, log_reason=False)
        try:
            mind_map = await _ai_activity(
                AiProcessingActivities.build_mind_map,
                BuildMindMapParams(session_id, work.title, readable),
            )
        except ActivityError as exc:
            return await self._fail(
                session_id, f"the mind map could not be built: {_cause(exc)}", usage
            )
        usage.add(mind_map.usage)
        await _database_step(
            AiProcessingActivities.complete_session,
            CompleteSessionParams(session_id=session_id, mind_map=mind_map, usage=usage),
        )
        return self._completed(session_id, usage)

    def _completed(self, session_id: int, usage: SessionUsage) -> ProcessSessionResult:
        workflow.logger.info(
            "session processing completed",
            extra={**_ids(session_id), "outcome": "completed", "llm_requests": usage.requests},
        )
        return ProcessSessionResult(session_id=session_id, outcome="completed", usage=usage)

    async def _summarize(self, work: SessionWork) -> list[PageSummaryResult]:
        """Every page in one activity (its pages run concurrently): two round trips through
        the Temporal server per session instead of one per page."""
        if not work.pages:
            return []
        result = await _ai_activity(
            AiProcessingActivities.summarize_session_pages,
            SummarizeSessionPagesParams(session_id=work.session_id, pages=work.pages),
            start_to_close=PAGES_ACTIVITY_TIMEOUT,
        )
        return result.pages

    async def _fail(
        self,
        session_id: int,
        reason: str,
        usage: SessionUsage,
        list_failed_pages: bool = False,
        log_reason: bool = True,
    ) -> ProcessSessionResult:
        """`log_reason=False` for a reason that names pages (the old path's): the worker's
        log gets ids, the reason is in sessions.failure_reason."""
        await _database_step(
            AiProcessingActivities.fail_session,
            FailSessionParams(session_id, reason, usage, list_failed_pages),
        )
        logged = reason if log_reason else "none of the visited pages could be summarised"
        workflow.logger.warning(
            "session processing completed",
            extra={**_ids(session_id), "outcome": "failed", "reason": logged},
        )
        if log_reason:
            workflow.set_current_details(f"Failed: {reason}")
        return ProcessSessionResult(session_id, outcome="failed", reason=reason, usage=usage)


async def _database_step(step: Callable[[A], Awaitable[R]], arg: A) -> R:
    """A short, idempotent database step as a local activity: it runs in this worker without
    a round trip through the Temporal server (a third of a session's server load)."""
    return await workflow.execute_local_activity(
        step,
        arg,
        start_to_close_timeout=timedelta(seconds=30),
        retry_policy=DATABASE_RETRY,
    )


async def _ai_activity(
    step: Callable[[A], Awaitable[R]], arg: A, start_to_close: timedelta = AI_ACTIVITY_TIMEOUT
) -> R:
    """An activity on the AI task queue of this workflow's queue, with the LLM retry policy."""
    return await workflow.execute_activity(
        step,
        arg,
        task_queue=ai_task_queue(workflow.info().task_queue),
        start_to_close_timeout=start_to_close,
        heartbeat_timeout=AI_HEARTBEAT_TIMEOUT,
        retry_policy=LLM_RETRY,
    )


def _ids(session_id: int) -> dict[str, object]:
    return {"session_id": session_id}


def _cause(exc: ActivityError) -> str:
    cause = exc.cause
    if isinstance(cause, ApplicationError):
        return cause.message
    return str(cause or exc)


def _no_pages_reason(pages: list[PageSummaryResult]) -> str:
    if not pages:
        return "the session has no visited pages to build a mind map from"
    listed = "; ".join(f"{p.url}: {p.error}" for p in pages[:MAX_REASONS_LISTED])
    more = len(pages) - MAX_REASONS_LISTED
    suffix = f"; and {more} more" if more > 0 else ""
    return f"none of the {len(pages)} visited pages could be summarised ({listed}{suffix})"
