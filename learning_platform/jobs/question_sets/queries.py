"""Question sets: how the app requests one, and the SQL of the generation and cleanup jobs.

Concurrent writers (the app, question-set-cleanup, question-set-retry, generation attempts) meet
on the `version` column. Single-row writers read, then write `WHERE version = <read>`; if that
changes no row, `OptimisticLockConflict` is raised and the caller (a Temporal activity) is
retried and reads again. Batch jobs re-check their condition on each row as they write it
(question-set-retry on rows it locked with `FOR UPDATE SKIP LOCKED`, question-set-cleanup in
its UPDATE, after waiting for a concurrent writer); they bump `version` too, so single-row
writers notice them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, insert, literal, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from learning_platform.core.batches import (
    BatchOutcome,
    Keyset,
    after_parameters,
    outcome_of_row,
    rows_after,
)
from learning_platform.core.errors import ServiceError
from learning_platform.core.notifications import record_notification
from learning_platform.jobs.outbox_relay.events import enqueue_event
from learning_platform.jobs.question_sets.models import (
    MAX_QUESTION_SET_RETRIES,
    Question,
    QuestionDraft,
    QuestionSet,
    QuestionSetStatus,
    Source,
    SourceStatus,
)

REQUESTED_EVENT = "question_set.requested"
AGGREGATE_TYPE = "question_set"


class OptimisticLockConflict(ServiceError):
    """Another writer changed the set since it was read; read again and retry."""


class SourceUnavailable(ServiceError):
    """The source does not exist, is not the user's, or is being deleted."""


@dataclass(frozen=True)
class RequestedAttempt:
    question_set_id: int
    attempt: int


@dataclass(frozen=True)
class AttemptTarget:
    storage_key: str
    content_type: str
    source_title: str
    question_count: int


@dataclass(frozen=True)
class NewQuestion:
    prompt: str
    answer: str
    explanation: str
    choices: Sequence[str]


def _requested_payload(question_set_id: int, attempt: int) -> dict[str, int]:
    return {"question_set_id": question_set_id, "attempt": attempt}


async def request_question_set(
    conn: AsyncConnection, *, user_id: int, source_id: int, title: str, question_count: int = 5
) -> RequestedAttempt:
    """Insert a `pending` set and its `question_set.requested` event in the caller's
    transaction; the outbox relay starts generation once it commits."""
    inserted = (
        insert(QuestionSet)
        .from_select(
            ["user_id", "source_id", "title", "question_count"],
            select(Source.user_id, Source.id, literal(title), literal(question_count)).where(
                Source.id == source_id,
                Source.user_id == user_id,
                Source.status == SourceStatus.ACTIVE,
            ),
        )
        .returning(QuestionSet.id, QuestionSet.attempt)
    )
    row = (await conn.execute(inserted)).one_or_none()
    if row is None:
        raise SourceUnavailable(
            f"source {source_id} is not an active source of user {user_id}; "
            "upload it again or pick another source"
        )
    await enqueue_event(
        conn,
        aggregate_type=AGGREGATE_TYPE,
        aggregate_id=row.id,
        event_type=REQUESTED_EVENT,
        payload=_requested_payload(row.id, row.attempt),
    )
    return RequestedAttempt(question_set_id=row.id, attempt=row.attempt)


async def request_regeneration(
    conn: AsyncConnection, *, question_set_id: int, expected_version: int
) -> RequestedAttempt:
    """The user asks again for a failed set they saw at `expected_version`: a new attempt
    (not counted in `retry_count`, which counts automatic retries)."""
    statement = (
        update(QuestionSet)
        .where(
            QuestionSet.id == question_set_id,
            QuestionSet.version == expected_version,
            QuestionSet.status == QuestionSetStatus.FAILED,
        )
        .values(
            status=QuestionSetStatus.PENDING,
            attempt=QuestionSet.attempt + 1,
            failure_reason=None,
            retryable=True,
            version=QuestionSet.version + 1,
            requested_at=text("now()"),
            updated_at=text("now()"),
        )
        .returning(QuestionSet.attempt)
    )
    attempt = (await conn.execute(statement)).scalar_one_or_none()
    if attempt is None:
        raise OptimisticLockConflict(
            f"question set {question_set_id} is no longer failed at version {expected_version}; "
            "reload it and try again"
        )
    await enqueue_event(
        conn,
        aggregate_type=AGGREGATE_TYPE,
        aggregate_id=question_set_id,
        event_type=REQUESTED_EVENT,
        payload=_requested_payload(question_set_id, attempt),
    )
    return RequestedAttempt(question_set_id=question_set_id, attempt=attempt)


async def request_source_deletion(conn: AsyncConnection, *, source_id: int) -> bool:
    """Mark a source for source-cleanup; its sets keep it until they are gone."""
    statement = (
        update(Source)
        .where(Source.id == source_id, Source.status == SourceStatus.ACTIVE)
        .values(
            status=SourceStatus.DELETE_PENDING,
            deletion_requested_at=text("now()"),
            updated_at=text("now()"),
        )
    )
    return bool((await conn.execute(statement)).rowcount)  # type: ignore[attr-defined]


async def attempt_target(
    conn: AsyncConnection, *, question_set_id: int, attempt: int
) -> AttemptTarget | None:
    """What `attempt` should generate from, or None when the set is no longer on it."""
    statement = (
        select(Source.storage_key, Source.content_type, Source.title, QuestionSet.question_count)
        .join(Source, Source.id == QuestionSet.source_id)
        .where(
            QuestionSet.id == question_set_id,
            QuestionSet.attempt == attempt,
            QuestionSet.status == QuestionSetStatus.PENDING,
        )
    )
    row = (await conn.execute(statement)).one_or_none()
    if row is None:
        return None
    return AttemptTarget(
        storage_key=row.storage_key,
        content_type=row.content_type,
        source_title=row.title,
        question_count=row.question_count,
    )


async def staged_question_count(
    conn: AsyncConnection, *, question_set_id: int, attempt: int
) -> int | None:
    """How many questions `attempt` has staged, or None when it has staged none yet."""
    return await conn.scalar(
        select(func.jsonb_array_length(QuestionDraft.questions)).where(
            QuestionDraft.question_set_id == question_set_id, QuestionDraft.attempt == attempt
        )
    )


async def stage_questions(
    conn: AsyncConnection,
    *,
    question_set_id: int,
    attempt: int,
    questions: Sequence[NewQuestion],
    generator: str,
) -> int:
    """Stage `attempt`'s questions until the attempt completes (complete_staged_attempt).
    An attempt stages once: a repeat keeps the first questions. Their count is returned."""
    await conn.execute(
        pg_insert(QuestionDraft)
        .values(
            question_set_id=question_set_id,
            attempt=attempt,
            questions=[_draft_json(question) for question in questions],
            generator=generator,
        )
        .on_conflict_do_nothing(index_elements=["question_set_id", "attempt"])
    )
    staged = await staged_question_count(conn, question_set_id=question_set_id, attempt=attempt)
    assert staged is not None, "the draft was just stored"
    return staged


def _draft_json(question: NewQuestion) -> dict[str, object]:
    return {
        "prompt": question.prompt,
        "answer": question.answer,
        "explanation": question.explanation,
        "choices": list(question.choices),
    }


class NothingStaged(ServiceError):
    """The attempt is to be completed, but it staged no questions."""


async def complete_staged_attempt(
    conn: AsyncConnection, *, question_set_id: int, attempt: int
) -> int | None:
    """complete_attempt with the questions `attempt` staged, in the caller's transaction; the
    number of questions saved, or None (the staged questions discarded) when the set is no
    longer on `attempt`. A repeat after the commit finds the set completed by `attempt` and
    answers the same count."""
    draft = (
        await conn.execute(
            select(QuestionDraft.questions)
            .where(
                QuestionDraft.question_set_id == question_set_id, QuestionDraft.attempt == attempt
            )
            .with_for_update()
        )
    ).scalar_one_or_none()
    if draft is None:
        return await _completed_without_draft(conn, question_set_id, attempt)
    questions = [
        NewQuestion(
            prompt=str(q["prompt"]), answer=str(q["answer"]),
            explanation=str(q["explanation"]), choices=[str(c) for c in q["choices"]],
        )
        for q in draft
    ]  # fmt: skip
    saved = await complete_attempt(
        conn, question_set_id=question_set_id, attempt=attempt, questions=questions
    )
    if not saved:
        await _discard_drafts(conn, question_set_id, attempt)
        return None
    return len(questions)


async def _completed_without_draft(
    conn: AsyncConnection, question_set_id: int, attempt: int
) -> int | None:
    """A completion that finds nothing staged: a repeat after the first one committed (the
    count `attempt` saved), or the set has moved on (None). A set still pending on `attempt`
    with nothing staged means the generation step was skipped: NothingStaged."""
    row = (
        await conn.execute(
            select(QuestionSet.status, QuestionSet.attempt).where(QuestionSet.id == question_set_id)
        )
    ).one_or_none()
    if row is None or row.attempt != attempt:
        return None
    if row.status == QuestionSetStatus.PENDING:
        raise NothingStaged(
            f"attempt {attempt} of question set {question_set_id} has no staged questions to "
            "complete"
        )
    if row.status != QuestionSetStatus.COMPLETED:
        return None
    saved = await conn.scalar(
        select(func.count()).where(
            Question.question_set_id == question_set_id, Question.attempt == attempt
        )
    )
    return int(saved or 0)


async def _discard_drafts(
    conn: AsyncConnection, question_set_id: int, attempt: int | None = None
) -> None:
    """The set's staged questions (of `attempt` only, when given)."""
    statement = delete(QuestionDraft).where(QuestionDraft.question_set_id == question_set_id)
    if attempt is not None:
        statement = statement.where(QuestionDraft.attempt == attempt)
    await conn.execute(statement)


@dataclass(frozen=True)
class _CurrentSet:
    user_id: int
    title: str
    version: int


async def _current_if_on(
    conn: AsyncConnection, question_set_id: int, attempt: int
) -> _CurrentSet | None:
    statement = select(
        QuestionSet.user_id, QuestionSet.title, QuestionSet.version, QuestionSet.attempt,
        QuestionSet.status,
    ).where(QuestionSet.id == question_set_id)  # fmt: skip
    row = (await conn.execute(statement)).one_or_none()
    if row is None or row.attempt != attempt or row.status != QuestionSetStatus.PENDING:
        return None
    return _CurrentSet(user_id=row.user_id, title=row.title, version=row.version)


async def _finish_attempt(
    conn: AsyncConnection, question_set_id: int, current: _CurrentSet, **values: object
) -> None:
    statement = (
        update(QuestionSet)
        .where(QuestionSet.id == question_set_id, QuestionSet.version == current.version)
        .values(version=QuestionSet.version + 1, updated_at=text("now()"), **values)
    )
    if not (await conn.execute(statement)).rowcount:  # type: ignore[attr-defined]
        raise OptimisticLockConflict(
            f"question set {question_set_id} changed after it was read at version {current.version}"
        )


async def complete_attempt(
    conn: AsyncConnection,
    *,
    question_set_id: int,
    attempt: int,
    questions: Sequence[NewQuestion],
) -> bool:
    """Save `attempt`'s questions, mark the set completed and notify its owner, all in the
    caller's transaction; staged questions of every attempt of the set go. False (nothing
    written) when the set is no longer on `attempt`."""
    current = await _current_if_on(conn, question_set_id, attempt)
    if current is None:
        return False
    await _finish_attempt(
        conn, question_set_id, current, status=QuestionSetStatus.COMPLETED, failure_reason=None
    )
    await _discard_drafts(conn, question_set_id)
    await conn.execute(
        insert(Question),
        [
            {
                "question_set_id": question_set_id,
                "attempt": attempt,
                "position": position,
                "prompt": question.prompt,
                "choices": list(question.choices),
                "answer": question.answer,
                "explanation": question.explanation,
            }
            for position, question in enumerate(questions, start=1)
        ],
    )
    await record_notification(
        conn,
        user_id=current.user_id,
        kind="question_set.completed",
        payload={
            "question_set_id": question_set_id,
            "title": current.title,
            "question_count": len(questions),
        },
        dedupe_key=f"question-set-{question_set_id}-attempt-{attempt}-completed",
    )
    return True


async def fail_attempt(
    conn: AsyncConnection, *, question_set_id: int, attempt: int, reason: str, retryable: bool
) -> bool:
    """Mark the set failed by `attempt`; False when the set is no longer on it. The owner is
    notified when no automatic retry will follow."""
    current = await _current_if_on(conn, question_set_id, attempt)
    if current is None:
        return False
    await _finish_attempt(
        conn,
        question_set_id,
        current,
        status=QuestionSetStatus.FAILED,
        failure_reason=reason,
        retryable=retryable,
    )
    retry_count = await conn.scalar(
        select(QuestionSet.retry_count).where(QuestionSet.id == question_set_id)
    )
    if not retryable or retry_count == MAX_QUESTION_SET_RETRIES:
        await record_notification(
            conn,
            user_id=current.user_id,
            kind="question_set.failed",
            payload={"question_set_id": question_set_id, "title": current.title, "reason": reason},
            dedupe_key=f"question-set-{question_set_id}-attempt-{attempt}-failed",
        )
    return True


# Batches walk the partial index on pending sets' (requested_at, id) in key order, each
# starting after the last row of the previous one: restarting from the start of the index would
# re-read the dead entries earlier batches left (status is in the index predicate, so these
# updates are never HOT) and make the job quadratic.
#
# The batch is read without `FOR UPDATE SKIP LOCKED`; the UPDATE re-checks the stale condition
# on each row's latest version instead (READ COMMITTED re-evaluates it after waiting for a
# concurrent writer). A set an attempt completed meanwhile, or one another cleanup already
# failed, is left alone, and no row is written twice (a row lock first, then the update, would
# write each row twice). `id = ANY (ARRAY(...))` gets the primary key; `FROM batch` was planned
# as a hash join over a sequential scan.
#
# The owner hears of a failure only when no automatic retry follows (retry_count at the
# maximum); a failure question-set-retry will retry is not news yet.
_FAIL_STALE_BATCH = f"""
    WITH batch AS (
        SELECT id, requested_at FROM question_sets
         WHERE status = 'pending' AND requested_at < :cutoff AND {{after}}
         ORDER BY requested_at, id
         LIMIT :limit
    ), failed AS (
        UPDATE question_sets
           SET status = 'failed', failure_reason = :reason, retryable = true,
               version = version + 1, updated_at = now()
         WHERE id = ANY (ARRAY(SELECT id FROM batch))
           AND status = 'pending' AND requested_at < :cutoff
        RETURNING id, user_id, attempt, retry_count, title
    ), undrafted AS (
        -- Questions an attempt staged before its workflow timed out. `= ANY (ARRAY(...))`:
        -- one scan of the primary key; `IN (SELECT ...)` was planned as a nested loop of one
        -- bitmap scan per failed set (20,000 of them: 25-45 ms of a 20,000-set batch).
        DELETE FROM question_drafts WHERE question_set_id = ANY (ARRAY(SELECT id FROM failed))
    ), notified AS (
        INSERT INTO notifications (user_id, kind, payload, dedupe_key)
        SELECT user_id, 'question_set.failed',
               jsonb_build_object('question_set_id', id, 'title', title, 'reason', :reason),
               'question-set-' || id || '-attempt-' || attempt || '-failed'
          FROM failed
         WHERE retry_count >= {MAX_QUESTION_SET_RETRIES}
         ORDER BY user_id  -- users' notification locks in one order (migration 0001)
        ON CONFLICT (dedupe_key) DO NOTHING
    )
    SELECT (SELECT count(*) FROM batch) AS read, (SELECT count(*) FROM failed) AS changed,
           requested_at, id
      FROM batch ORDER BY requested_at DESC, id DESC LIMIT 1
    """


async def fail_stale_batch(
    conn: AsyncConnection, *, after: Keyset | None, cutoff: datetime, reason: str, limit: int
) -> BatchOutcome:
    """Fail the next `limit` pending sets after `after` (their (requested_at, id); None: from
    the first) whose current attempt was requested before `cutoff`."""
    sql = _FAIL_STALE_BATCH.format(after=rows_after(("requested_at", "id"), after))
    parameters = {"cutoff": cutoff, "reason": reason, "limit": limit} | after_parameters(after)
    row = (await conn.execute(text(sql), parameters)).one_or_none()
    return outcome_of_row(row, ("requested_at", "id"), limit=limit, after=after)


# Oldest failures first, so a backlog drains in order; each retried set gets its requested
# event in the same statement, and the relay starts the new attempt's workflow.
_RETRY_FAILED_BATCH = text(
    f"""
    WITH retried AS (
        UPDATE question_sets
           SET status = 'pending', attempt = attempt + 1, retry_count = retry_count + 1,
               failure_reason = NULL, version = version + 1,
               requested_at = now(), updated_at = now()
         WHERE id IN (
               SELECT id FROM question_sets
                WHERE status = 'failed' AND retryable
                  AND retry_count < {MAX_QUESTION_SET_RETRIES}
                ORDER BY updated_at
                LIMIT :limit
                  FOR UPDATE SKIP LOCKED)
        RETURNING id, attempt
    ), events AS (
        INSERT INTO outbox_events (aggregate_type, aggregate_id, event_type, payload)
        SELECT :aggregate_type, id::text, :event_type,
               jsonb_build_object('question_set_id', id, 'attempt', attempt)
          FROM retried
    )
    SELECT id, attempt FROM retried ORDER BY id
    """
)


async def retry_failed_batch(conn: AsyncConnection, *, limit: int) -> list[RequestedAttempt]:
    """Move up to `limit` retryable failed sets to a new pending attempt."""
    rows = await conn.execute(
        _RETRY_FAILED_BATCH,
        {"limit": limit, "aggregate_type": AGGREGATE_TYPE, "event_type": REQUESTED_EVENT},
    )
    return [RequestedAttempt(question_set_id=row.id, attempt=row.attempt) for row in rows]
