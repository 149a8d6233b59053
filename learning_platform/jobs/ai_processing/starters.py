"""Starting a session's processing workflow: from the sweeper, the CLI, or the app when a
session ends. One workflow id per session (`session-<id>`), so a start while one is running
leaves the running one alone."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from learning_platform.core.errors import UsageError
from learning_platform.jobs.ai_processing import queries as session_processing
from learning_platform.jobs.ai_processing.contracts import (
    SESSION_WORKFLOW,
    ProcessSessionInput,
    session_workflow_id,
)
from learning_platform.jobs.contracts import SESSION_ID_SEARCH_ATTRIBUTE

SESSION_ID = SearchAttributeKey.for_int(SESSION_ID_SEARCH_ATTRIBUTE)
# Bounds a stuck run; the next sweep starts the session again.
SESSION_RUN_TIMEOUT = timedelta(hours=2)
# A busy worker (hundreds of sessions at once) can take longer than the default 10 s to
# finish a workflow task; the server would then hand the task out again and the worker replay
# the whole history, which made a busy worker busier (bench/ai_processing). A task lost with
# a crashed worker is retried after this instead.
SESSION_TASK_TIMEOUT = timedelta(seconds=30)


async def start_session_workflow(
    client: Client, *, session_id: int, user_id: int, page_count: int, task_queue: str
) -> bool:
    """Start processing `session_id`; False if its workflow is already running.

    A finished earlier run does not block a new one (the session is processing again, or the
    new run sees it is not and ends at once).
    """
    try:
        await client.start_workflow(
            SESSION_WORKFLOW,
            ProcessSessionInput(session_id=session_id),
            id=session_workflow_id(session_id),
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            execution_timeout=SESSION_RUN_TIMEOUT,
            task_timeout=SESSION_TASK_TIMEOUT,
            search_attributes=TypedSearchAttributes([SearchAttributePair(SESSION_ID, session_id)]),
            static_summary=f"Session {session_id} of user {user_id}: {page_count} pages",
            static_details=session_details(session_id),
        )
    except WorkflowAlreadyStartedError:
        return False
    return True


def session_details(session_id: int) -> str:
    """The workflow's static details (Markdown; the UI's User Metadata tab, `temporal workflow
    describe`): where the content is, since the history holds ids and counts only."""
    return (
        f"Pages, titles, summaries and the mind map of session {session_id} are in the "
        "database, not in this history: `page_visits`, `page_crawls`, `url_summaries`, "
        "`mind_maps`, `sessions.failure_reason`.\n\n"
        "Progress and the outcome: this run's current details."
    )


class SessionNotWaitingError(UsageError):
    """The session does not exist or is not waiting to be processed."""


async def process_session_now(
    client: Client, engine: AsyncEngine, *, session_id: int, task_queue: str
) -> bool:
    """What the app calls when a session ends (status set to processing): start at once
    rather than at the next sweep. Raises SessionNotWaitingError unless it is processing."""
    async with engine.connect() as conn:
        session = await session_processing.session_pages(conn, session_id)
    if session is None:
        raise SessionNotWaitingError(f"session {session_id} does not exist")
    if session.status != "processing":
        raise SessionNotWaitingError(
            f"session {session_id} is {session.status}, not processing: only a session that "
            "has ended and waits for its summary can be processed"
        )
    return await start_session_workflow(
        client,
        session_id=session_id,
        user_id=session.user_id,
        page_count=len(session.pages),
        task_queue=task_queue,
    )
