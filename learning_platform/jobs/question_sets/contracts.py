"""Question sets and sources: generation and the question-set and source cleanup jobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from learning_platform.jobs.contracts import Activity, ActivityInterfaces, JobSchedule

if TYPE_CHECKING:
    from learning_platform.core.settings import Settings

QUESTION_GENERATION_WORKFLOW = "QuestionGeneration"

# The steps of QuestionGeneration since GENERATION_IDS_ONLY_PATCH: ids and counts in, ids and
# counts out. The activities read the source from our database and storage, and stage the
# generated questions there (question_drafts); the source's title and storage key and the
# questions stay out of the workflow's history. PREPARE_GENERATION, GENERATE_QUESTIONS and
# SAVE_GENERATED_QUESTIONS serve the workflows started before the patch; remove them with the
# old path. FAIL_GENERATION_ATTEMPT serves both (its reason names no title or key).
GENERATION_IDS_ONLY_PATCH = "question-generation-ids-only"

# Application error types, so workflows can tell outcomes apart without importing the domain.
BAD_SOURCE_ERROR = "BadSource"
OPTIMISTIC_LOCK_CONFLICT_ERROR = "OptimisticLockConflict"


def generation_workflow_id(question_set_id: int, attempt: int, prefix: str = "") -> str:
    """One workflow per attempt: a redelivered request for the same attempt finds it again.

    `prefix` (SCHEDULE_ID_PREFIX) keeps deployments or test runs sharing a namespace apart."""
    return f"{prefix}question-set-{question_set_id}-attempt-{attempt}"


@dataclass
class QuestionGenerationInput:
    question_set_id: int
    attempt: int


@dataclass
class GenerationAttempt:
    """CHECK_GENERATION_ATTEMPT's answer: whether the set is still on the attempt, and how
    many questions it asks for."""

    on_attempt: bool
    question_count: int = 0


@dataclass
class StagedQuestions:
    """GENERATE_STAGED_QUESTIONS's answer: how many questions it staged for the attempt;
    `superseded` when the set had moved on before anything was generated."""

    staged: int
    superseded: bool = False


@dataclass
class CompletedGeneration:
    """COMPLETE_STAGED_GENERATION's answer: False when the set had moved on (the staged
    questions are then discarded)."""

    completed: bool
    question_count: int = 0


@dataclass
class GenerationTarget:
    """What an attempt works on; `superseded` when the set has moved on to another attempt
    (or state) since the attempt was requested, so it must not be generated at all."""

    superseded: bool
    storage_key: str = ""
    content_type: str = ""
    source_title: str = ""
    question_count: int = 0


@dataclass
class GenerateQuestionsParams:
    question_set_id: int
    attempt: int
    storage_key: str
    content_type: str
    source_title: str
    question_count: int


@dataclass
class GeneratedQuestion:
    prompt: str
    answer: str
    explanation: str
    # Empty for a cloze question answered in free text.
    choices: list[str] = field(default_factory=list)


@dataclass
class GeneratedQuestions:
    questions: list[GeneratedQuestion]
    generator: str


@dataclass
class SaveGeneratedQuestionsParams:
    question_set_id: int
    attempt: int
    questions: list[GeneratedQuestion]
    generator: str


@dataclass
class FailGenerationAttemptParams:
    question_set_id: int
    attempt: int
    reason: str
    # False for failures no retry can fix (a bad source): question-set-retry leaves them alone.
    retryable: bool


@dataclass
class QuestionGenerationResult:
    # "completed", "failed", or "superseded" (a newer attempt or the cleanup got there first).
    outcome: str
    question_count: int = 0
    reason: str = ""


@dataclass
class QuestionSetCleanupInput:
    scheduled_time: datetime | None = None
    max_pending_minutes: float = 60.0


@dataclass
class FailStaleQuestionSetsParams:
    cutoff: datetime
    reason: str


@dataclass
class QuestionSetCleanupResult:
    failed_sets: int
    cutoff: datetime


@dataclass
class QuestionSetRetryInput:
    scheduled_time: datetime | None = None
    batch_size: int = 100


@dataclass
class RetryFailedQuestionSetsParams:
    limit: int


@dataclass
class QuestionSetRetryResult:
    retried_sets: int


@dataclass
class SourceCleanupInput:
    scheduled_time: datetime | None = None


@dataclass
class DeleteUnusedSourcesParams:
    # Only sources whose deletion was requested before this time: a caught-up run deletes what
    # the on-time run would have.
    requested_before: datetime


@dataclass
class SourceCleanupResult:
    deleted_sources: int


def schedules(settings: Settings) -> list[JobSchedule]:
    return [
        JobSchedule(
            schedule_id="question-set-cleanup",
            workflow="QuestionSetCleanup",
            arg=QuestionSetCleanupInput(max_pending_minutes=settings.stale_question_set_minutes),
            description="Question sets pending for over 60 min become failed (generation timeout)",
            every=timedelta(minutes=10),
        ),
        JobSchedule(
            schedule_id="question-set-retry",
            workflow="QuestionSetRetry",
            arg=QuestionSetRetryInput(batch_size=settings.question_set_retry_batch_size),
            description="Failed question sets with retries left get a new generation attempt",
            every=timedelta(minutes=5),
        ),
        JobSchedule(
            schedule_id="source-cleanup",
            workflow="SourceCleanup",
            arg=SourceCleanupInput(),
            description="Sources marked for deletion and used by no question set: object, then row",
            cron="0 4 * * *",
            execution_timeout=timedelta(hours=2),
            catchup_window=timedelta(days=1),
        ),
    ]


class QuestionSetActivities(ActivityInterfaces):
    """The activities as workflows call them (`activities/question_sets.py` implements each)."""

    prepare_question_generation: Activity[QuestionGenerationInput, GenerationTarget]
    """The source to generate from (the path before GENERATION_IDS_ONLY_PATCH), or superseded."""

    check_question_generation_attempt: Activity[QuestionGenerationInput, GenerationAttempt]
    """Whether the set is still on this attempt, and how many questions it wants."""

    complete_staged_question_generation: Activity[QuestionGenerationInput, CompletedGeneration]
    """The attempt's staged questions saved, the set completed and its owner notified, in one
    transaction; not completed when the set has moved on."""

    save_generated_questions: Activity[SaveGeneratedQuestionsParams, bool]
    """True when saved; False when the set has moved on (its result is then discarded)."""

    fail_question_generation_attempt: Activity[FailGenerationAttemptParams, bool]
    """The attempt failed with its reason (retryable or not); False when the set moved on."""

    fail_stale_question_sets: Activity[FailStaleQuestionSetsParams, int]
    """Batch after batch, each its own short transaction, until one comes back short."""

    retry_failed_question_sets: Activity[RetryFailedQuestionSetsParams, int]
    """One bounded batch per run (QUESTION_SET_RETRY_BATCH_SIZE, 100 by default): a backlog drains
    over a few runs without flooding the LLM with new attempts at once."""

    delete_unused_sources: Activity[DeleteUnusedSourcesParams, int]
    """Batch after batch: objects first, then their rows (see `delete_unused_batch`)."""

    generate_staged_questions: Activity[QuestionGenerationInput, StagedQuestions]
    """generate_questions with the source read from the database and the questions staged there
    (question_drafts): only their count returns. A retry after the questions were staged (a lost
    worker, a lost completion) answers from the stage, without the LLM."""

    generate_questions: Activity[GenerateQuestionsParams, GeneratedQuestions]
    """The step of workflows started before GENERATION_IDS_ONLY_PATCH (questions in the history)."""
