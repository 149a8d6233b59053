"""Question-set generation and the Pullit jobs: question-set-cleanup, question-set-retry,
source-cleanup (the Pullit document, sections 1 and 2)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from learning_platform.jobs.ai_processing.contracts import ai_task_queue
from learning_platform.jobs.question_sets.contracts import (
    BAD_SOURCE_ERROR,
    DELETE_UNUSED_SOURCES,
    FAIL_GENERATION_ATTEMPT,
    FAIL_STALE_QUESTION_SETS,
    GENERATE_QUESTIONS,
    PREPARE_GENERATION,
    QUESTION_GENERATION_WORKFLOW,
    RETRY_FAILED_QUESTION_SETS,
    SAVE_GENERATED_QUESTIONS,
    DeleteUnusedSourcesParams,
    FailGenerationAttemptParams,
    FailStaleQuestionSetsParams,
    GeneratedQuestions,
    GenerateQuestionsParams,
    GenerationTarget,
    QuestionGenerationInput,
    QuestionGenerationResult,
    QuestionSetCleanupInput,
    QuestionSetCleanupResult,
    QuestionSetRetryInput,
    QuestionSetRetryResult,
    RetryFailedQuestionSetsParams,
    SaveGeneratedQuestionsParams,
    SourceCleanupInput,
    SourceCleanupResult,
)
from workflows.job_run import job_run, scheduled_time
from workflows.retry_policies import DATABASE_RETRY

# An optimistic-lock conflict clears as soon as the activity reads again: retry quickly.
CONFLICT_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=100),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
)
# Bounded, so that a failing LLM fails the attempt (and question-set-retry tries again later)
# well inside the attempt's execution timeout.
LLM_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=5,
    non_retryable_error_types=[BAD_SOURCE_ERROR],
)


@workflow.defn(name=QUESTION_GENERATION_WORKFLOW)
class QuestionGeneration:
    """One attempt at a set's questions: read the source, ask the LLM, save in one transaction.

    Started by `activities.question_sets.start_generation_workflow` with an execution timeout
    below question-set-cleanup's stale age. An attempt the set no longer is on ends
    `superseded` and writes nothing.
    """

    @workflow.run
    async def run(self, params: QuestionGenerationInput) -> QuestionGenerationResult:
        target: GenerationTarget = await workflow.execute_activity(
            PREPARE_GENERATION,
            params,
            result_type=GenerationTarget,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=DATABASE_RETRY,
        )
        if target.superseded:
            return QuestionGenerationResult(outcome="superseded")
        try:
            generated: GeneratedQuestions = await workflow.execute_activity(
                GENERATE_QUESTIONS,
                GenerateQuestionsParams(
                    question_set_id=params.question_set_id,
                    attempt=params.attempt,
                    storage_key=target.storage_key,
                    content_type=target.content_type,
                    source_title=target.source_title,
                    question_count=target.question_count,
                ),
                result_type=GeneratedQuestions,
                task_queue=ai_task_queue(workflow.info().task_queue),
                start_to_close_timeout=timedelta(minutes=5),
                retry_policy=LLM_RETRY,
            )
        except ActivityError as error:
            return await self._fail(params, error)
        saved: bool = await workflow.execute_activity(
            SAVE_GENERATED_QUESTIONS,
            SaveGeneratedQuestionsParams(
                question_set_id=params.question_set_id,
                attempt=params.attempt,
                questions=generated.questions,
                generator=generated.generator,
            ),
            result_type=bool,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=CONFLICT_RETRY,
        )
        if not saved:
            return QuestionGenerationResult(outcome="superseded")
        return QuestionGenerationResult(
            outcome="completed", question_count=len(generated.questions)
        )

    async def _fail(
        self, params: QuestionGenerationInput, error: ActivityError
    ) -> QuestionGenerationResult:
        cause = error.cause
        reason = cause.message if isinstance(cause, ApplicationError) else str(cause or error)
        bad_source = isinstance(cause, ApplicationError) and cause.type == BAD_SOURCE_ERROR
        failed: bool = await workflow.execute_activity(
            FAIL_GENERATION_ATTEMPT,
            FailGenerationAttemptParams(
                question_set_id=params.question_set_id,
                attempt=params.attempt,
                reason=reason,
                retryable=not bad_source,
            ),
            result_type=bool,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=CONFLICT_RETRY,
        )
        return QuestionGenerationResult(outcome="failed" if failed else "superseded", reason=reason)


@workflow.defn(name="QuestionSetCleanup")
class QuestionSetCleanup:
    """Sets whose current attempt has been pending for more than `max_pending_minutes` before
    the scheduled time become `failed` ("generation timed out")."""

    @workflow.run
    async def run(self, params: QuestionSetCleanupInput) -> QuestionSetCleanupResult:
        async with job_run("question-set-cleanup") as run:
            cutoff = scheduled_time(params.scheduled_time) - timedelta(
                minutes=params.max_pending_minutes
            )
            failed: int = await workflow.execute_activity(
                FAIL_STALE_QUESTION_SETS,
                FailStaleQuestionSetsParams(
                    cutoff=cutoff,
                    reason=f"generation timed out (pending for over "
                    f"{params.max_pending_minutes:g} minutes)",
                ),
                result_type=int,
                start_to_close_timeout=timedelta(minutes=5),
                heartbeat_timeout=timedelta(seconds=30),
                retry_policy=DATABASE_RETRY,
            )
            run.counts.update(failed_sets=failed, cutoff=cutoff.isoformat())
        return QuestionSetCleanupResult(failed_sets=failed, cutoff=cutoff)


@workflow.defn(name="QuestionSetRetry")
class QuestionSetRetry:
    """Up to `batch_size` failed sets with retries left get a new attempt (requested through
    the outbox, like the app's first request)."""

    @workflow.run
    async def run(self, params: QuestionSetRetryInput) -> QuestionSetRetryResult:
        async with job_run("question-set-retry") as run:
            retried: int = await workflow.execute_activity(
                RETRY_FAILED_QUESTION_SETS,
                RetryFailedQuestionSetsParams(limit=params.batch_size),
                result_type=int,
                start_to_close_timeout=timedelta(minutes=1),
                retry_policy=DATABASE_RETRY,
            )
            run.counts["retried_sets"] = retried
        return QuestionSetRetryResult(retried_sets=retried)


@workflow.defn(name="SourceCleanup")
class SourceCleanup:
    """Sources marked for deletion before the scheduled time and used by no set: stored
    object deleted, then the row."""

    @workflow.run
    async def run(self, params: SourceCleanupInput) -> SourceCleanupResult:
        async with job_run("source-cleanup") as run:
            deleted: int = await workflow.execute_activity(
                DELETE_UNUSED_SOURCES,
                DeleteUnusedSourcesParams(requested_before=scheduled_time(params.scheduled_time)),
                result_type=int,
                start_to_close_timeout=timedelta(minutes=30),
                heartbeat_timeout=timedelta(minutes=1),
                retry_policy=DATABASE_RETRY,
            )
            run.counts["deleted_sources"] = deleted
        return SourceCleanupResult(deleted_sources=deleted)
