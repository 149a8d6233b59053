"""Question-set generation, question-set-cleanup, question-set-retry and source-cleanup."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from activities.batches import run_batches
from activities.interfaces import implements
from activities.llm_errors import llm_errors_as_application_errors
from learning_platform.core.settings import Settings
from learning_platform.jobs.contracts import TokenUsage
from learning_platform.jobs.question_sets import contracts, sources
from learning_platform.jobs.question_sets import queries as question_sets
from learning_platform.jobs.question_sets.ai import NoQuestionsPossible, QuestionAi
from learning_platform.jobs.question_sets.contracts import (
    BAD_SOURCE_ERROR,
    OPTIMISTIC_LOCK_CONFLICT_ERROR,
    QUESTION_GENERATION_WORKFLOW,
    CompletedGeneration,
    DeleteUnusedSourcesParams,
    FailGenerationAttemptParams,
    FailStaleQuestionSetsParams,
    GeneratedQuestion,
    GeneratedQuestions,
    GenerateQuestionsParams,
    GenerationAttempt,
    GenerationTarget,
    QuestionGenerationInput,
    QuestionGenerationResult,
    RetryFailedQuestionSetsParams,
    SaveGeneratedQuestionsParams,
    StagedQuestions,
    generation_workflow_id,
)
from learning_platform.jobs.question_sets.offline_questions import DraftQuestion
from learning_platform.jobs.question_sets.source_text import BadSource, source_text
from learning_platform.storage import ObjectNotFound, ObjectStorage


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
            id=generation_workflow_id(question_set_id, attempt, settings.schedule_id_prefix),
            task_queue=settings.task_queue,
            # Below the stale age, so question-set-cleanup never fails a running attempt.
            execution_timeout=timedelta(minutes=settings.question_generation_timeout_minutes),
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            static_summary=generation_summary(question_set_id, attempt),
            static_details=generation_details(question_set_id, attempt),
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
) -> WorkflowHandle[Any, QuestionGenerationResult]:
    """For the app: request a set and start its generation at once, without waiting for the
    outbox relay (whose later start of the same attempt is then a no-op)."""
    async with engine.begin() as conn:
        requested = await question_sets.request_question_set(
            conn, user_id=user_id, source_id=source_id, title=title, question_count=question_count
        )
    await start_generation_workflow(client, settings, requested.question_set_id, requested.attempt)
    return client.get_workflow_handle(
        generation_workflow_id(
            requested.question_set_id, requested.attempt, settings.schedule_id_prefix
        ),
        result_type=QuestionGenerationResult,
    )


@dataclass(frozen=True, eq=False)
class QuestionSetActivities:
    """Database side of generation, and the three scheduled jobs."""

    engine: AsyncEngine
    storage: ObjectStorage
    settings: Settings

    @implements(contracts.QuestionSetActivities.prepare_question_generation)
    async def prepare_generation(self, params: QuestionGenerationInput) -> GenerationTarget:
        if (target := await self._attempt_target(params)) is None:
            return GenerationTarget(superseded=True)
        return GenerationTarget(
            superseded=False,
            storage_key=target.storage_key,
            content_type=target.content_type,
            source_title=target.source_title,
            question_count=target.question_count,
        )

    @implements(contracts.QuestionSetActivities.check_question_generation_attempt)
    async def check_generation_attempt(self, params: QuestionGenerationInput) -> GenerationAttempt:
        if (target := await self._attempt_target(params)) is None:
            return GenerationAttempt(on_attempt=False)
        return GenerationAttempt(on_attempt=True, question_count=target.question_count)

    async def _attempt_target(
        self, params: QuestionGenerationInput
    ) -> question_sets.AttemptTarget | None:
        async with self.engine.connect() as conn:
            return await question_sets.attempt_target(
                conn, question_set_id=params.question_set_id, attempt=params.attempt
            )

    @implements(contracts.QuestionSetActivities.complete_staged_question_generation)
    async def complete_staged_generation(
        self, params: QuestionGenerationInput
    ) -> CompletedGeneration:
        """The attempt's staged questions saved, the set completed and its owner notified, in
        one transaction; not completed when the set has moved on."""
        async with self._transaction() as conn:
            try:
                saved = await question_sets.complete_staged_attempt(
                    conn, question_set_id=params.question_set_id, attempt=params.attempt
                )
            except question_sets.NothingStaged as exc:
                raise ApplicationError(str(exc), non_retryable=True) from exc
        if saved is None:
            return CompletedGeneration(completed=False)
        return CompletedGeneration(completed=True, question_count=saved)

    @implements(contracts.QuestionSetActivities.save_generated_questions)
    async def save_generated_questions(self, params: SaveGeneratedQuestionsParams) -> bool:
        """True when saved; False when the set has moved on (its result is then discarded)."""
        questions = [
            question_sets.NewQuestion(q.prompt, q.answer, q.explanation, q.choices)
            for q in params.questions
        ]
        async with self._transaction() as conn:
            return await question_sets.complete_attempt(
                conn, question_set_id=params.question_set_id, attempt=params.attempt,
                questions=questions,
            )  # fmt: skip

    @implements(contracts.QuestionSetActivities.fail_question_generation_attempt)
    async def fail_generation_attempt(self, params: FailGenerationAttemptParams) -> bool:
        async with self._transaction() as conn:
            return await question_sets.fail_attempt(
                conn, question_set_id=params.question_set_id, attempt=params.attempt,
                reason=params.reason, retryable=params.retryable,
            )  # fmt: skip

    @implements(contracts.QuestionSetActivities.fail_stale_question_sets)
    async def fail_stale_question_sets(self, params: FailStaleQuestionSetsParams) -> int:
        """Batch after batch, each its own short transaction, until one comes back short.

        Idempotent: a repeated run finds the sets already failed and changes nothing.
        """
        batch = partial(
            question_sets.fail_stale_batch,
            cutoff=params.cutoff,
            reason=params.reason,
        )
        return await run_batches(self.engine, batch, limit=self.settings.cleanup_batch_size)

    @implements(contracts.QuestionSetActivities.retry_failed_question_sets)
    async def retry_failed_question_sets(self, params: RetryFailedQuestionSetsParams) -> int:
        """One bounded batch per run (QUESTION_SET_RETRY_BATCH_SIZE, 100 by default): a
        backlog drains over a few runs without flooding the LLM with new attempts at once."""
        async with self.engine.begin() as conn:
            retried = await question_sets.retry_failed_batch(conn, limit=params.limit)
        return len(retried)

    @implements(contracts.QuestionSetActivities.delete_unused_sources)
    async def delete_unused_sources(self, params: DeleteUnusedSourcesParams) -> int:
        """Batch after batch: objects first, then their rows (see `delete_unused_batch`)."""
        batch = partial(
            sources.delete_unused_batch,
            delete_objects=self.storage.delete,
            requested_before=params.requested_before,
        )
        return await run_batches(self.engine, batch, limit=self.settings.source_cleanup_batch_size)

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        """A transaction on a question set whose optimistic-lock conflict (another writer moved
        the set on first) fails the attempt retryably: the retry reads the set afresh."""
        try:
            async with self.engine.begin() as conn:
                yield conn
        except question_sets.OptimisticLockConflict as exc:
            raise ApplicationError(str(exc), type=OPTIMISTIC_LOCK_CONFLICT_ERROR) from exc


@dataclass(frozen=True, eq=False)
class QuestionAiActivities:
    """The LLM step: the source's text from storage, questions from the provider."""

    engine: AsyncEngine
    storage: ObjectStorage
    ai: QuestionAi
    llm_slots: asyncio.Semaphore

    @implements(contracts.QuestionSetActivities.generate_staged_questions)
    async def generate_staged_questions(self, params: QuestionGenerationInput) -> StagedQuestions:
        """generate_questions with the source read from the database and the questions staged
        there (question_drafts): only their count returns. A retry after the questions were
        staged (a lost worker, a lost completion) answers from the stage, without the LLM."""
        set_id, attempt = params.question_set_id, params.attempt
        async with self.engine.connect() as conn:
            staged = await question_sets.staged_question_count(
                conn, question_set_id=set_id, attempt=attempt
            )
            if staged is not None:
                return StagedQuestions(staged=staged)
            target = await question_sets.attempt_target(
                conn, question_set_id=set_id, attempt=attempt
            )
        if target is None:
            return StagedQuestions(staged=0, superseded=True)
        drafts = await self._make_questions(set_id, attempt, target)
        async with self.engine.begin() as conn:
            staged = await question_sets.stage_questions(
                conn,
                question_set_id=set_id,
                attempt=attempt,
                questions=[
                    question_sets.NewQuestion(d.prompt, d.answer, d.explanation, d.choices)
                    for d in drafts
                ],
                generator=self.ai.generator,
            )
        return StagedQuestions(staged=staged)

    @implements(contracts.QuestionSetActivities.generate_questions)
    async def generate_questions(self, params: GenerateQuestionsParams) -> GeneratedQuestions:
        """The step of workflows started before GENERATION_IDS_ONLY_PATCH (questions in the
        history)."""
        target = question_sets.AttemptTarget(
            params.storage_key, params.content_type, params.source_title, params.question_count
        )
        drafts = await self._make_questions(params.question_set_id, params.attempt, target)
        return GeneratedQuestions(
            questions=[
                GeneratedQuestion(
                    prompt=d.prompt, answer=d.answer, explanation=d.explanation, choices=d.choices
                )
                for d in drafts
            ],
            generator=self.ai.generator,
        )

    async def _make_questions(
        self, set_id: int, attempt: int, target: question_sets.AttemptTarget
    ) -> list[DraftQuestion]:
        """Failures say what is wrong without the source's title or storage key: the message
        travels through the workflow's history and the worker's logs."""
        with _bad_source_as_non_retryable(), llm_errors_as_application_errors():
            data = await self._read_source(target.storage_key)
            text = source_text(data, target.content_type)
            async with self.llm_slots:
                drafts, usage = await self.ai.make_questions(
                    title=target.source_title,
                    text=text,
                    count=target.question_count,
                    seed=set_id * 1000 + attempt,
                )
        _log_generated(set_id, attempt, len(drafts), self.ai.generator, usage)
        return drafts

    async def _read_source(self, storage_key: str) -> bytes:
        try:
            return await self.storage.get(storage_key)
        except ObjectNotFound:
            # Not chained: ObjectNotFound names the storage key, and the chain is logged and
            # stored with the activity's failure.
            raise BadSource("the source's file is missing from storage; upload it again") from None


def _log_generated(
    set_id: int, attempt: int, questions: int, generator: str, usage: TokenUsage
) -> None:
    activity.logger.info(
        "questions generated",
        extra={
            "question_set_id": set_id,
            "attempt": attempt,
            "questions": questions,
            "generator": generator,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
        },
    )


def generation_summary(question_set_id: int, attempt: int) -> str:
    """The workflow's one-line summary in the UI and `temporal workflow describe`: ids only."""
    return f"Question set {question_set_id}, attempt {attempt}"


def generation_details(question_set_id: int, attempt: int) -> str:
    """The workflow's static details (Markdown): where the content is."""
    return (
        f"The source and the questions of set {question_set_id} are in the database, not in "
        f"this history: `sources`, `question_drafts` (attempt {attempt}'s questions until they "
        "are saved), `questions`, `question_sets.failure_reason`.\n\n"
        "Progress and the outcome: this run's current details."
    )


@contextmanager
def _bad_source_as_non_retryable() -> Iterator[None]:
    try:
        yield
    except (BadSource, NoQuestionsPossible) as exc:
        raise ApplicationError(str(exc), type=BAD_SOURCE_ERROR, non_retryable=True) from exc
