"""Question-set generation, question-set-cleanup, question-set-retry and source-cleanup."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from contracts.question_sets import (
    QUESTION_GENERATION_WORKFLOW,
    QuestionGenerationInput,
    generation_workflow_id,
)
from learning_platform import question_sets
from learning_platform.settings import Settings


async def start_generation_workflow(
    client: Client, settings: Settings, question_set_id: int, attempt: int
) -> None:
    """Start attempt `attempt` of a set's generation; a repeated call is harmless.

    The outbox relay calls this for every `question_set.requested` event, at least once. While
    the attempt runs, a repeat attaches to it (USE_EXISTING); once it has closed, a repeat is
    rejected (REJECT_DUPLICATE), so an attempt never runs twice. A new attempt has a new id.
    """
    try:
        await client.start_workflow(
            QUESTION_GENERATION_WORKFLOW,
            QuestionGenerationInput(question_set_id=question_set_id, attempt=attempt),
            id=generation_workflow_id(question_set_id, attempt),
            task_queue=settings.task_queue,
            # Below the stale age, so question-set-cleanup never fails a running attempt.
            execution_timeout=timedelta(minutes=settings.question_generation_timeout_minutes),
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        return


async def request_and_start_question_set(
    engine: AsyncEngine,
    client: Client,
    settings: Settings,
    *,
    user_id: int,
    source_id: int,
    title: str,
    question_count: int = 5,
) -> WorkflowHandle[object, object]:
    """For the app: request a set and start its generation at once, without waiting for the
    outbox relay (whose later start of the same attempt is then a no-op)."""
    async with engine.begin() as conn:
        requested = await question_sets.request_question_set(
            conn, user_id=user_id, source_id=source_id, title=title, question_count=question_count
        )
    await start_generation_workflow(client, settings, requested.question_set_id, requested.attempt)
    return client.get_workflow_handle(
        generation_workflow_id(requested.question_set_id, requested.attempt)
    )
