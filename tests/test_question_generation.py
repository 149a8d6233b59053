from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from activities.question_sets import request_and_start_question_set, start_generation_workflow
from activities.registry import Dependencies
from learning_platform.core.settings import Settings
from learning_platform.jobs.question_sets import queries as question_sets
from learning_platform.jobs.question_sets.contracts import (
    QuestionGenerationInput,
    QuestionGenerationResult,
    QuestionSetActivities,
    generation_workflow_id,
)
from learning_platform.storage import build_storage
from tests.factories import add_user
from tests.fake_openai import FakeOpenAI, Reply
from tests.question_set_factories import (
    STUDY_TEXT,
    add_question_set,
    add_source,
    question_set,
    rows,
)
from worker import create_workers
from workflows.question_sets import QuestionGeneration


async def stored_source(
    engine: AsyncEngine, settings: Settings, user: int, body: bytes, content_type: str
) -> int:
    key = f"users/{user}/{uuid.uuid4().hex}.txt"
    await build_storage(settings).put(key, body, content_type)
    return await add_source(engine, user, key, content_type=content_type)


async def request_set(
    engine: AsyncEngine, client: Client, settings: Settings, *, body: bytes = STUDY_TEXT.encode(),
    content_type: str = "text/plain",
) -> tuple[int, WorkflowHandle[Any, Any]]:  # fmt: skip
    user = await add_user(engine)
    source = await stored_source(engine, settings, user, body, content_type)
    handle = await request_and_start_question_set(
        engine, client, settings, user_id=user, source_id=source, title="Memory quiz",
        question_count=4,
    )  # fmt: skip
    (set_id,) = [r.id for r in await rows(engine, "SELECT id FROM question_sets")]
    return set_id, handle


async def result_of(handle: WorkflowHandle[Any, Any]) -> QuestionGenerationResult:
    typed = handle._client.get_workflow_handle(handle.id, result_type=QuestionGenerationResult)
    return await typed.result()


async def test_offline_generation_saves_real_questions_and_notifies(
    engine: AsyncEngine, client: Client, worker: Worker, settings: Settings
) -> None:
    set_id, handle = await request_set(engine, client, settings)

    result = await result_of(handle)

    assert handle.id == f"{settings.schedule_id_prefix}question-set-{set_id}-attempt-1"
    assert result.outcome == "completed" and result.question_count == 4
    saved = await question_set(engine, set_id)
    assert (saved.status, saved.attempt, saved.question_attempts) == ("completed", 1, [1] * 4)
    questions = await rows(
        engine, "SELECT prompt, choices, answer FROM questions ORDER BY position"
    )
    for prompt, choices, answer in questions:
        assert "_____" in prompt and answer.lower() not in prompt.lower()
        assert answer.lower() in STUDY_TEXT.lower()
        assert choices == [] or (len(choices) == 4 and answer in choices)
    assert any(choices for _, choices, _ in questions), "expected multiple-choice questions"
    notes = await rows(engine, "SELECT kind, dedupe_key FROM notifications")
    assert [tuple(n) for n in notes] == [
        ("question_set.completed", f"question-set-{set_id}-attempt-1-completed")
    ]
    # The app's request also went through the outbox, for the relay.
    events = await rows(engine, "SELECT event_type, payload FROM outbox_events")
    assert [tuple(e) for e in events] == [
        ("question_set.requested", {"question_set_id": set_id, "attempt": 1})
    ]


async def test_a_redelivered_request_is_harmless(
    engine: AsyncEngine, client: Client, worker: Worker, settings: Settings
) -> None:
    set_id, handle = await request_set(engine, client, settings)
    await start_generation_workflow(client, settings, set_id, 1)  # while running, or just after
    assert (await result_of(handle)).outcome == "completed", await result_of(handle)
    first_run = (await handle.describe()).run_id
    await start_generation_workflow(client, settings, set_id, 1)  # after it closed

    # The latest run is still the first one (describe is consistent; the visibility list lags).
    assert (await handle.describe()).run_id == first_run
    assert (await question_set(engine, set_id)).question_attempts == [1] * 4


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"   \n", "text/plain", "is empty"),
        (b"%PDF-1.7 ...", "application/pdf", "is application/pdf"),
        (b"\xff\xfe\xfa broken", "text/plain", "not readable utf-8"),
        (b"Too short. No.", "text/markdown", "no sentence to make a question"),
    ],
)
async def test_bad_sources_fail_at_once_and_are_not_retried(
    engine: AsyncEngine, client: Client, worker: Worker, settings: Settings,
    body: bytes, content_type: str, reason: str,
) -> None:  # fmt: skip
    set_id, handle = await request_set(
        engine, client, settings, body=body, content_type=content_type
    )

    result = await result_of(handle)

    assert result.outcome == "failed" and reason in result.reason
    failed = await question_set(engine, set_id)
    assert (failed.status, failed.retryable, failed.question_attempts) == ("failed", False, [])
    assert failed.failure_reason is not None and reason in failed.failure_reason
    kinds = await rows(engine, "SELECT kind FROM notifications")
    assert [k for (k,) in kinds] == ["question_set.failed"]
    async with engine.begin() as conn:
        assert await question_sets.retry_failed_batch(conn, limit=10) == []


async def test_missing_source_object_is_a_bad_source(
    engine: AsyncEngine, client: Client, worker: Worker, settings: Settings
) -> None:
    user = await add_user(engine)
    source = await add_source(engine, user, "users/never-uploaded.txt")
    set_id = await add_question_set(engine, user, source)
    await start_generation_workflow(client, settings, set_id, 1)

    result = await result_of(
        client.get_workflow_handle(generation_workflow_id(set_id, 1, settings.schedule_id_prefix))
    )

    assert result.outcome == "failed" and "missing from storage" in result.reason


@pytest.fixture
def fake_llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI.running() as fake:
        yield fake


@pytest.fixture
async def llm_worker(
    client: Client, deps: Dependencies, fake_llm: FakeOpenAI
) -> AsyncIterator[Worker]:
    settings = deps.settings.model_copy(update=fake_llm.settings_update())
    llm_deps = Dependencies(settings=settings, engine=deps.engine, temporal=client)
    main, ai = create_workers(client, llm_deps)
    async with ai, main:
        yield main


def llm_questions(label: str) -> dict[str, object]:
    return {
        "questions": [
            {
                "prompt": f"{label}: who studied the forgetting curve in {year}?",
                "choices": ["Ebbinghaus", "Pavlov", "Skinner", "Piaget"],
                "answer": "Ebbinghaus",
                "explanation": "The source says Hermann Ebbinghaus studied it.",
            }
            for year in (1885, 1886)
        ]
    }


async def test_llm_generation_reasks_on_invalid_output(
    engine: AsyncEngine, client: Client, llm_worker: Worker, settings: Settings,
    fake_llm: FakeOpenAI,
) -> None:  # fmt: skip
    invalid = llm_questions("bad")
    invalid["questions"][0]["answer"] = "Freud"  # type: ignore[index]
    fake_llm.script(Reply.json(invalid), Reply.json(llm_questions("good")))

    _, handle = await request_set(engine, client, settings)
    result = await result_of(handle)

    assert result.outcome == "completed" and result.question_count == 2
    asked = fake_llm.requests_for("question_set")
    assert len(asked) == 2 and "forgetting curve" in asked[0].user_text
    assert "not one of its choices" in asked[1].user_text
    prompts = await rows(engine, "SELECT prompt FROM questions ORDER BY position")
    assert [p for (p,) in prompts] == [
        "good: who studied the forgetting curve in 1885?",
        "good: who studied the forgetting curve in 1886?",
    ]


async def test_a_stale_attempts_late_result_never_overwrites_the_newer_attempt(
    engine: AsyncEngine, client: Client, llm_worker: Worker, settings: Settings,
    fake_llm: FakeOpenAI,
) -> None:  # fmt: skip
    release_first = threading.Event()
    fake_llm.script(Reply(content=json.dumps(llm_questions("attempt 1")), gate=release_first))
    set_id, first = await request_set(engine, client, settings)
    await fake_llm.wait_for_requests(1)

    # While attempt 1 waits on the LLM: the cleanup fails the set, the retry job starts attempt 2.
    async with engine.begin() as conn:
        cutoff = datetime.now(UTC) + timedelta(minutes=1)
        cleaned = await question_sets.fail_stale_batch(
            conn, after=None, cutoff=cutoff, reason="t", limit=10
        )
        assert cleaned.changed == 1
    async with engine.begin() as conn:
        assert len(await question_sets.retry_failed_batch(conn, limit=10)) == 1
    fake_llm.script(Reply.json(llm_questions("attempt 2")))
    await start_generation_workflow(client, settings, set_id, 2)
    second = client.get_workflow_handle(
        generation_workflow_id(set_id, 2, settings.schedule_id_prefix)
    )
    assert (await result_of(second)).outcome == "completed"

    release_first.set()
    assert (await result_of(first)).outcome == "superseded"

    final = await question_set(engine, set_id)
    assert (final.status, final.attempt, final.retry_count) == ("completed", 2, 1)
    assert final.question_attempts == [2, 2]
    prompts = await rows(engine, "SELECT prompt FROM questions")
    assert all(p.startswith("attempt 2") for (p,) in prompts)


async def wait_until_blocked_on_a_lock(engine: AsyncEngine, within_seconds: float = 10) -> None:
    """Poll (PostgreSQL has no event for it) until another backend waits for a row lock."""
    async with asyncio.timeout(within_seconds):
        while True:
            blocked = await rows(
                engine,
                "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query ILIKE '%UPDATE question_sets%'",
            )
            if blocked:
                return
            await asyncio.sleep(0.02)


async def test_cleanup_committing_under_a_finishing_attempt_makes_it_conflict_and_stand_down(
    engine: AsyncEngine, client: Client, worker: Worker, settings: Settings
) -> None:
    user = await add_user(engine)
    source = await stored_source(engine, settings, user, STUDY_TEXT.encode(), "text/plain")
    set_id = await add_question_set(engine, user, source)

    async with engine.connect() as cleanup:
        transaction = await cleanup.begin()
        cutoff = datetime.now(UTC) + timedelta(minutes=1)
        cleaned = await question_sets.fail_stale_batch(
            cleanup, after=None, cutoff=cutoff, reason="t", limit=5
        )
        assert cleaned.changed == 1
        await start_generation_workflow(client, settings, set_id, 1)
        # The attempt read version 1 and now waits to write `WHERE version = 1`.
        await wait_until_blocked_on_a_lock(engine)
        await transaction.commit()

    handle = client.get_workflow_handle(
        generation_workflow_id(set_id, 1, settings.schedule_id_prefix)
    )
    assert (await result_of(handle)).outcome == "superseded"
    final = await question_set(engine, set_id)
    assert (final.status, final.question_attempts, final.version) == ("failed", [], 2)
    save_attempts = [
        event.activity_task_started_event_attributes.attempt
        async for event in handle.fetch_history_events()
        if event.HasField("activity_task_started_event_attributes")
        and _activity_name(await _scheduled(handle, event))
        == QuestionSetActivities.complete_staged_question_generation.__name__
    ]
    assert save_attempts == [2], "the conflict should have failed the first save attempt"


async def _scheduled(handle: WorkflowHandle[Any, Any], started: object) -> object:
    history = await handle.fetch_history()
    scheduled_id = started.activity_task_started_event_attributes.scheduled_event_id  # type: ignore[attr-defined]
    return next(e for e in history.events if e.event_id == scheduled_id)


def _activity_name(scheduled: object) -> str:
    return str(scheduled.activity_task_scheduled_event_attributes.activity_type.name)  # type: ignore[attr-defined]


async def test_cleanup_waits_for_a_finishing_attempt_and_leaves_the_completed_set_alone(
    engine: AsyncEngine,
) -> None:
    user = await add_user(engine)
    source = await add_source(engine, user, "users/a.txt")
    set_id = await add_question_set(
        engine, user, source, requested_at=datetime.now(UTC) - timedelta(hours=2)
    )
    draft = question_sets.NewQuestion(prompt="p", answer="a", explanation="e", choices=[])

    async def clean_up() -> int:
        async with engine.begin() as cleanup:
            batch = await question_sets.fail_stale_batch(
                cleanup,
                after=None,
                cutoff=datetime.now(UTC),
                reason="t",
                limit=5,
            )
        return batch.changed

    async with engine.connect() as attempt:
        transaction = await attempt.begin()
        assert await question_sets.complete_attempt(
            attempt, question_set_id=set_id, attempt=1, questions=[draft]
        )
        # Cleanup read the set as stale and pending; its UPDATE waits for the attempt's row.
        cleanup = asyncio.create_task(clean_up())
        await wait_until_blocked_on_a_lock(engine)
        await transaction.commit()

    assert await cleanup == 0  # re-checked on the committed row: completed, not stale
    final = await question_set(engine, set_id)
    assert (final.status, final.question_attempts) == ("completed", [1])


async def test_an_attempt_the_set_is_no_longer_on_writes_nothing(
    engine: AsyncEngine, client: Client, worker: Worker
) -> None:
    user = await add_user(engine)
    source = await add_source(engine, user, "users/a.txt")
    set_id = await add_question_set(engine, user, source, attempt=2)

    result = await client.execute_workflow(
        QuestionGeneration.run,
        QuestionGenerationInput(question_set_id=set_id, attempt=1),
        id=f"stale-{uuid.uuid4()}",
        task_queue=worker.task_queue,
    )

    assert result.outcome == "superseded"
    unchanged = await question_set(engine, set_id)
    assert (unchanged.status, unchanged.version, unchanged.attempt) == ("pending", 1, 2)
    assert await rows(engine, "SELECT 1 FROM notifications") == []


async def test_a_set_cannot_hold_questions_of_two_attempts(engine: AsyncEngine) -> None:
    user = await add_user(engine)
    source = await add_source(engine, user, "users/a.txt")
    set_id = await add_question_set(engine, user, source)
    draft = question_sets.NewQuestion(prompt="p", answer="a", explanation="e", choices=[])
    async with engine.begin() as conn:
        await question_sets.complete_attempt(
            conn, question_set_id=set_id, attempt=1, questions=[draft]
        )

    with pytest.raises(Exception, match="fk_questions_question_set_attempt"):
        async with engine.begin() as conn:
            await conn.execute(
                text("UPDATE question_sets SET attempt = 2 WHERE id = :id"), {"id": set_id}
            )


def drafts(*prompts: str) -> list[question_sets.NewQuestion]:
    return [
        question_sets.NewQuestion(prompt=p, answer="a", explanation="e", choices=[])
        for p in prompts
    ]


async def test_a_retried_generation_takes_the_questions_it_staged_and_asks_the_llm_nothing(
    engine: AsyncEngine, client: Client, llm_worker: Worker, settings: Settings,
    fake_llm: FakeOpenAI,
) -> None:  # fmt: skip
    """As after a worker lost between staging the questions and reporting them: the retry
    finds the attempt's stage and answers from it."""
    user = await add_user(engine)
    source = await stored_source(engine, settings, user, STUDY_TEXT.encode(), "text/plain")
    set_id = await add_question_set(engine, user, source)
    async with engine.begin() as conn:
        staged = await question_sets.stage_questions(
            conn, question_set_id=set_id, attempt=1, questions=drafts("p1", "p2"), generator="g"
        )
    assert staged == 2

    await start_generation_workflow(client, settings, set_id, 1)
    result = await result_of(
        client.get_workflow_handle(generation_workflow_id(set_id, 1, settings.schedule_id_prefix))
    )

    assert (result.outcome, result.question_count) == ("completed", 2)
    assert fake_llm.requests_for("question_set") == []
    prompts = await rows(engine, "SELECT prompt FROM questions ORDER BY position")
    assert [p for (p,) in prompts] == ["p1", "p2"]
    assert await rows(engine, "SELECT 1 FROM question_drafts") == []


async def test_staging_twice_keeps_the_first_questions(engine: AsyncEngine) -> None:
    user = await add_user(engine)
    set_id = await add_question_set(engine, user, await add_source(engine, user, "users/a.txt"))

    async with engine.begin() as conn:
        first = await question_sets.stage_questions(
            conn, question_set_id=set_id, attempt=1, questions=drafts("p1", "p2"), generator="g"
        )
        again = await question_sets.stage_questions(
            conn, question_set_id=set_id, attempt=1, questions=drafts("other"), generator="g"
        )

    assert (first, again) == (2, 2)
    (draft,) = await rows(engine, "SELECT questions FROM question_drafts")
    assert [q["prompt"] for q in draft.questions] == ["p1", "p2"]


async def test_completing_a_staged_attempt_again_after_its_commit_saves_nothing_twice(
    engine: AsyncEngine,
) -> None:
    """A completion activity retried after its transaction committed (its answer lost)."""
    user = await add_user(engine)
    set_id = await add_question_set(engine, user, await add_source(engine, user, "users/a.txt"))
    async with engine.begin() as conn:
        await question_sets.stage_questions(
            conn, question_set_id=set_id, attempt=1, questions=drafts("p1", "p2"), generator="g"
        )

    counts = []
    for _ in range(2):
        async with engine.begin() as conn:
            counts.append(
                await question_sets.complete_staged_attempt(conn, question_set_id=set_id, attempt=1)
            )

    assert counts == [2, 2]
    assert (await question_set(engine, set_id)).question_attempts == [1, 1]
    assert len(await rows(engine, "SELECT 1 FROM notifications")) == 1


async def test_a_superseded_attempts_staged_questions_are_discarded(engine: AsyncEngine) -> None:
    user = await add_user(engine)
    source = await add_source(engine, user, "users/a.txt")
    set_id = await add_question_set(engine, user, source, attempt=2)
    async with engine.begin() as conn:
        await question_sets.stage_questions(
            conn, question_set_id=set_id, attempt=1, questions=drafts("late"), generator="g"
        )
        saved = await question_sets.complete_staged_attempt(conn, question_set_id=set_id, attempt=1)

    assert saved is None
    assert await rows(engine, "SELECT 1 FROM question_drafts") == []
    assert (await question_set(engine, set_id)).question_attempts == []


async def test_cleanup_removes_what_a_timed_out_attempt_staged(engine: AsyncEngine) -> None:
    user = await add_user(engine)
    set_id = await add_question_set(
        engine, user, await add_source(engine, user, "users/a.txt"),
        requested_at=datetime.now(UTC) - timedelta(hours=2),
    )  # fmt: skip
    async with engine.begin() as conn:
        await question_sets.stage_questions(
            conn, question_set_id=set_id, attempt=1, questions=drafts("p"), generator="g"
        )
        batch = await question_sets.fail_stale_batch(
            conn, after=None, cutoff=datetime.now(UTC), reason="t", limit=5
        )

    assert batch.changed == 1
    assert await rows(engine, "SELECT 1 FROM question_drafts") == []
