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
    GENERATION_IDS_ONLY_PATCH,
    QUESTION_GENERATION_WORKFLOW,
    DeleteUnusedSourcesParams,
    FailGenerationAttemptParams,
    FailStaleQuestionSetsParams,
    GenerateQuestionsParams,
    QuestionGenerationInput,
    QuestionGenerationResult,
    QuestionSetActivities,
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
from workflows.retry_policies import DATABASE_RETRY, LLM_RETRY, batch_activity

# An optimistic-lock conflict clears as soon as the activity reads again: retry quickly.
CONFLICT_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=100),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
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
        # Since GENERATION_IDS_ONLY_PATCH the history holds ids and counts only; workflows
        # started before it replay (and finish) on the path that carried the source's title
        # and storage key and the questions. Once none of those runs is left:
        # workflow.deprecate_patch, then remove _run_with_content and its activities.
        if workflow.patched(GENERATION_IDS_ONLY_PATCH):
            return await self._run_on_ids(params)
        return await self._run_with_content(params)

    async def _run_on_ids(self, params: QuestionGenerationInput) -> QuestionGenerationResult:
        ids = f"set {params.question_set_id}, attempt {params.attempt}"
        attempt = await workflow.execute_activity(
            QuestionSetActivities.check_question_generation_attempt,
            params,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=DATABASE_RETRY,
            summary=f"Is {ids} still current?",
        )
        if not attempt.on_attempt:
            return self._ended(QuestionGenerationResult(outcome="superseded"))
        # Current details (the UI's User Metadata tab, `temporal workflow metadata`) and the
        # activity summaries (the UI's timeline) hold ids and counts only, as the history does.
        workflow.set_current_details(f"Generating {attempt.question_count} questions")
        try:
            staged = await workflow.execute_activity(
                QuestionSetActivities.generate_staged_questions,
                params,
                task_queue=ai_task_queue(workflow.info().task_queue),
                start_to_close_timeout=timedelta(minutes=5),
                retry_policy=LLM_RETRY,
                summary=f"Generate {attempt.question_count} questions ({ids})",
            )
        except ActivityError as error:
            return self._ended(await self._fail(params, error, summary=f"Record failure ({ids})"))
        if staged.superseded:
            return self._ended(QuestionGenerationResult(outcome="superseded"))
        workflow.set_current_details(f"Saving {staged.staged} questions")
        completed = await workflow.execute_activity(
            QuestionSetActivities.complete_staged_question_generation,
            params,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=CONFLICT_RETRY,
            summary=f"Save {staged.staged} questions, notify the owner ({ids})",
        )
        if not completed.completed:
            return self._ended(QuestionGenerationResult(outcome="superseded"))
        return self._ended(
            QuestionGenerationResult(outcome="completed", question_count=completed.question_count)
        )

    @staticmethod
    def _ended(result: QuestionGenerationResult) -> QuestionGenerationResult:
        counted = f": {result.question_count} questions" if result.outcome == "completed" else ""
        workflow.set_current_details(f"{result.outcome.capitalize()}{counted}")
        return result

    async def _run_with_content(self, params: QuestionGenerationInput) -> QuestionGenerationResult:
        """The path of workflows started before GENERATION_IDS_ONLY_PATCH (the source's title
        and storage key and the questions in the history)."""
        target = await workflow.execute_activity(
            QuestionSetActivities.prepare_question_generation,
            params,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=DATABASE_RETRY,
        )
        if target.superseded:
            return QuestionGenerationResult(outcome="superseded")
        try:
            generated = await workflow.execute_activity(
                QuestionSetActivities.generate_questions,
                GenerateQuestionsParams(
                    question_set_id=params.question_set_id,
                    attempt=params.attempt,
                    storage_key=target.storage_key,
                    content_type=target.content_type,
                    source_title=target.source_title,
                    question_count=target.question_count,
                ),
                task_queue=ai_task_queue(workflow.info().task_queue),
                start_to_close_timeout=timedelta(minutes=5),
                retry_policy=LLM_RETRY,
            )
        except ActivityError as error:
            return await self._fail(params, error)
        saved = await workflow.execute_activity(
            QuestionSetActivities.save_generated_questions,
            SaveGeneratedQuestionsParams(
                question_set_id=params.question_set_id,
                attempt=params.attempt,
                questions=generated.questions,
                generator=generated.generator,
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=CONFLICT_RETRY,
        )
        if not saved:
            return QuestionGenerationResult(outcome="superseded")
        return QuestionGenerationResult(
            outcome="completed", question_count=len(generated.questions)
        )

    async def _fail(
        self, params: QuestionGenerationInput, error: ActivityError, summary: str | None = None
    ) -> QuestionGenerationResult:
        cause = error.cause
        reason = cause.message if isinstance(cause, ApplicationError) else str(cause or error)
        bad_source = isinstance(cause, ApplicationError) and cause.type == BAD_SOURCE_ERROR
        failed = await workflow.execute_activity(
            QuestionSetActivities.fail_question_generation_attempt,
            FailGenerationAttemptParams(
                question_set_id=params.question_set_id,
                attempt=params.attempt,
                reason=reason,
                retryable=not bad_source,
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=CONFLICT_RETRY,
            summary=summary,
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
            reason = (
                f"generation timed out (pending for over {params.max_pending_minutes:g} minutes)"
            )
            failed = await batch_activity(
                QuestionSetActivities.fail_stale_question_sets,
                FailStaleQuestionSetsParams(cutoff=cutoff, reason=reason),
                start_to_close=timedelta(minutes=5),
                heartbeat=timedelta(seconds=30),
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
            retried = await workflow.execute_activity(
                QuestionSetActivities.retry_failed_question_sets,
                RetryFailedQuestionSetsParams(limit=params.batch_size),
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
            deleted = await batch_activity(
                QuestionSetActivities.delete_unused_sources,
                DeleteUnusedSourcesParams(requested_before=scheduled_time(params.scheduled_time)),
                start_to_close=timedelta(minutes=30),
                heartbeat=timedelta(minutes=1),
            )
            run.counts["deleted_sources"] = deleted
        return SourceCleanupResult(deleted_sources=deleted)
