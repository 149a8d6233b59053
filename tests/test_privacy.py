"""Users' browsing history and sources stay out of Temporal: histories read raw from the server
(a client with the SDK's default converter, no codec) hold no URL, title, storage key, e-mail,
page or source text — without the codec because workflows pass ids and counts, and with it
every payload is encrypted."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowHistory

from activities.question_sets import request_and_start_question_set
from learning_platform.core.settings import Settings
from learning_platform.jobs.ai_processing.contracts import ProcessSessionResult
from learning_platform.jobs.ai_processing.starters import process_session_now
from learning_platform.jobs.question_sets.contracts import QuestionGenerationResult
from learning_platform.scheduling.declarations import declared_schedules
from learning_platform.scheduling.sync import apply, full_id, plan
from learning_platform.storage import build_storage
from learning_platform.temporal.payload_codec import ENCODING
from tests.ai_processing_helpers import add_processing_session, rows, summarising_responder
from tests.factories import add_user
from tests.fake_openai import FakeOpenAI, RecordedRequest, Reply
from tests.history_payloads import (
    codec_payloads,
    generated_question_set_history,
    history_payloads,
    payloads_in,
    processed_session_history,
    raw_client,
)
from tests.pages_server import serving_pages
from tests.question_set_factories import STUDY_TEXT, add_source
from tests.worker_process import running_worker

EMAIL = "private.person@example.com"
SESSION_TITLE = "Reading about my diagnosis"
# What the pages, their titles, the summaries and the mind map say (tests/pages_server.py).
PAGE_TEXT = ["Spaced repetition", "Forgetting curve", "learning scientists", "How memory works"]
SOURCE_TITLE = "Notes from my therapy sessions"
SET_TITLE = "Quiz on my diagnosis"
# Words of the source (tests/question_set_factories.py) that its questions are made of.
SOURCE_TEXT = ["Ebbinghaus", "nonsense syllables", "flashcards", "Active recall", "1885"]


@pytest.fixture(scope="module")
def pages() -> Iterator[str]:
    with serving_pages() as base:
        yield base


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI.running() as fake:
        fake.responder = summarising_responder
        yield fake


async def run_session(
    client: Client, engine: AsyncEngine, settings: Settings, urls: list[str]
) -> tuple[ProcessSessionResult, WorkflowHistory, int]:
    user = await add_user(engine, email=EMAIL)
    session = await add_processing_session(engine, user, urls, title=SESSION_TITLE)
    result, history = await processed_session_history(client, engine, settings, session)
    return result, history, session


def private_strings(urls: list[str]) -> list[str]:
    return [*urls, *(url.split("//", 1)[1] for url in urls), EMAIL, SESSION_TITLE, *PAGE_TEXT]


def leaks(payloads: list[Payload], private: list[str]) -> list[str]:
    raw = b"".join(payload.SerializeToString() for payload in payloads)
    return [text for text in private if text.encode() in raw]


@pytest.fixture
def plain_settings(settings: Settings, llm: FakeOpenAI) -> Settings:
    """No codec: what the workflows themselves put in the history."""
    return settings.model_copy(
        update=llm.settings_update(crawler_allowed_hosts=["127.0.0.1"], payload_codec_keys=None)
    )


async def test_without_the_codec_a_session_history_holds_ids_and_counts_only(
    client: Client, engine: AsyncEngine, plain_settings: Settings, pages: str
) -> None:
    urls = [f"{pages}/article/{n}?q=private-{n}" for n in range(3)]

    result, history, _ = await run_session(raw_client(client), engine, plain_settings, urls)

    assert result.outcome == "completed" and result.usage.pages_summarized == 3
    payloads = history_payloads(history)
    assert len(payloads) > 5, "the history should have inputs and results to look at"
    assert leaks(payloads, private_strings(urls)) == []
    (mind_map,) = await rows(engine, "SELECT central_topic FROM mind_maps")
    assert mind_map.central_topic == "How memory works"  # stored in our database instead


async def test_without_the_codec_failed_pages_are_named_in_the_database_not_the_history(
    client: Client, engine: AsyncEngine, plain_settings: Settings, pages: str
) -> None:
    urls = [f"{pages}/missing?who=private-{n}" for n in range(2)]

    result, history, session = await run_session(raw_client(client), engine, plain_settings, urls)

    assert result.outcome == "failed"
    assert result.reason == "none of the 2 visited pages could be summarised"
    (row,) = await rows(engine, "SELECT failure_reason FROM sessions WHERE id = :s", s=session)
    assert all(url in row.failure_reason for url in urls)
    assert leaks(history_payloads(history), private_strings(urls)) == []


async def test_with_the_codec_every_payload_of_a_session_is_encrypted(
    client: Client, engine: AsyncEngine, settings: Settings, llm: FakeOpenAI, pages: str
) -> None:
    urls = [f"{pages}/article/{n}" for n in range(2)]
    encrypted = settings.model_copy(update=llm.settings_update(crawler_allowed_hosts=["127.0.0.1"]))

    result, history, _ = await run_session(client, engine, encrypted, urls)

    assert result.outcome == "completed"
    payloads = history_payloads(history)
    assert leaks(payloads, private_strings(urls)) == []
    encrypted_payloads = codec_payloads(history)
    assert len(encrypted_payloads) > 5
    assert {p.metadata["encoding"] for p in encrypted_payloads} == {ENCODING}


async def test_schedules_carry_encrypted_inputs_and_apply_still_sees_them_unchanged(
    client: Client, settings: Settings
) -> None:
    await apply(client, settings, declared_schedules(settings))
    target = full_id("cleanup-stale-sessions", settings)

    raw = await raw_client(client).get_schedule_handle(target).describe()
    action = raw.raw_description.schedule.action.start_workflow

    payloads = list(payloads_in(action, search_attributes=False))
    assert len(payloads) >= 3  # the input, the memo, the summary
    assert {p.metadata["encoding"] for p in payloads} == {ENCODING}
    changes = await plan(client, settings, declared_schedules(settings))
    assert {change.outcome for change in changes} == {"unchanged"}


async def generate_set(
    client: Client, engine: AsyncEngine, settings: Settings, body: bytes | None
) -> tuple[QuestionGenerationResult, WorkflowHistory, list[str]]:
    """A set generated from a source titled SOURCE_TITLE holding `body` (None: its file was
    never uploaded); the result, the raw history and what must not appear in it."""
    user = await add_user(engine, email=EMAIL)
    key = f"users/{user}/therapy-notes-{uuid.uuid4().hex}.txt"
    if body is not None:
        await build_storage(settings).put(key, body, "text/plain")
    source = await add_source(engine, user, key, title=SOURCE_TITLE)
    result, history = await generated_question_set_history(
        client, engine, settings, user_id=user, source_id=source, title=SET_TITLE
    )
    return result, history, [key, SOURCE_TITLE, SET_TITLE, EMAIL, *SOURCE_TEXT]


async def test_without_the_codec_a_question_generation_history_holds_ids_and_counts_only(
    client: Client, engine: AsyncEngine, settings: Settings
) -> None:
    plain = settings.model_copy(update={"payload_codec_keys": None})

    result, history, private = await generate_set(
        raw_client(client), engine, plain, STUDY_TEXT.encode()
    )

    assert result.outcome == "completed" and result.question_count == 5
    payloads = history_payloads(history)
    assert len(payloads) > 5, "the history should have inputs and results to look at"
    assert leaks(payloads, private) == []
    questions = await rows(engine, "SELECT prompt, answer FROM questions")
    assert len(questions) == 5  # stored in our database instead
    assert any(text in question.prompt + question.answer for question in questions
               for text in SOURCE_TEXT)  # fmt: skip
    assert await rows(engine, "SELECT 1 FROM question_drafts") == []


async def test_without_the_codec_a_failed_generation_names_neither_the_source_nor_its_key(
    client: Client, engine: AsyncEngine, settings: Settings
) -> None:
    plain = settings.model_copy(update={"payload_codec_keys": None})

    result, history, private = await generate_set(raw_client(client), engine, plain, None)

    assert result.outcome == "failed"
    assert result.reason == "the source's file is missing from storage; upload it again"
    (failed,) = await rows(engine, "SELECT failure_reason FROM question_sets")
    assert failed.failure_reason == result.reason
    assert leaks(history_payloads(history), private) == []


async def test_with_the_codec_every_payload_of_a_question_generation_is_encrypted(
    client: Client, engine: AsyncEngine, settings: Settings
) -> None:
    result, history, private = await generate_set(client, engine, settings, STUDY_TEXT.encode())

    assert result.outcome == "completed"
    assert leaks(history_payloads(history), private) == []
    encrypted_payloads = codec_payloads(history)
    assert len(encrypted_payloads) > 5
    assert {p.metadata["encoding"] for p in encrypted_payloads} == {ENCODING}


def leaky_llm(typo_url: str) -> object:
    """Summaries and maps as summarising_responder gives them, except that the first mind map
    names a page URL it was not given (the worker logs the problem and asks again); questions
    quote the source."""
    sent_bad_map = False

    def respond(request: RecordedRequest) -> Reply:
        nonlocal sent_bad_map
        if request.schema_name == "mind_map":
            given = request.user_text.split("Pages (JSON):\n", 1)[1]
            page_urls = [page["url"] for page in json.JSONDecoder().raw_decode(given)[0]]
            if not sent_bad_map:
                sent_bad_map = True
                page_urls = [typo_url]
            branch = {"topic": "t", "page_urls": page_urls, "children": []}
            return Reply.json({"central_topic": "c", "branches": [branch]})
        if request.schema_name == "question_set":
            question = {
                "prompt": "Who studied the forgetting curve in 1885 with nonsense syllables?",
                "choices": ["Ebbinghaus", "Pavlov"],
                "answer": "Ebbinghaus",
                "explanation": "Hermann Ebbinghaus studied it with nonsense syllables.",
            }
            return Reply.json({"questions": [question]})
        return summarising_responder(request)

    return respond


async def test_worker_logs_name_pages_and_sources_by_their_ids_only(
    client: Client, engine: AsyncEngine, settings: Settings, pages: str
) -> None:
    """The real worker process's JSON logs after a session with a page that answers 404, a
    host that does not resolve and a mind map the LLM got wrong once, a question set and one
    whose source file is missing: ids and counts, no URL, host, title, key or text."""
    hidden_host = "private-clinic.invalid"
    urls = [
        f"{pages}/article/0?q=private-0",
        f"{pages}/missing?who=private-1",
        f"http://{hidden_host}/my-results",
    ]
    user = await add_user(engine, email=EMAIL)
    session = await add_processing_session(engine, user, urls, title=SESSION_TITLE)
    good_key = f"users/{user}/therapy-notes-{uuid.uuid4().hex}.txt"
    missing_key = f"users/{user}/diary-{uuid.uuid4().hex}.txt"
    await build_storage(settings).put(good_key, STUDY_TEXT.encode(), "text/plain")
    sources = [
        await add_source(engine, user, key, title=f"{SOURCE_TITLE} {n}")
        for n, key in enumerate((good_key, missing_key))
    ]
    with FakeOpenAI.running() as llm:
        llm.responder = leaky_llm(urls[0] + "&typo=1")  # type: ignore[assignment]
        env = {
            "OPENAI_API_KEY": "test-key",
            "OPENAI_BASE_URL": llm.base_url,
            "OPENAI_MODEL": llm.model,
            "CRAWLER_ALLOWED_HOSTS": json.dumps(["127.0.0.1"]),
        }
        with running_worker(settings, **env) as worker:
            await process_session_now(
                client, engine, session_id=session, task_queue=settings.task_queue
            )
            processed = await client.get_workflow_handle(
                f"session-{session}", result_type=ProcessSessionResult
            ).result()
            outcomes = []
            for source in sources:
                handle = await request_and_start_question_set(
                    engine, client, settings, user_id=user, source_id=source, title=SET_TITLE
                )
                outcomes.append((await handle.result()).outcome)
            worker.find_log("")  # everything logged so far into worker.seen
            logged = [json.dumps(entry) for entry in worker.seen]

    assert processed.outcome == "completed" and processed.usage.pages_failed == 2
    assert outcomes == ["completed", "failed"]
    skipped = [e for e in worker.seen if e.get("msg") == "page skipped"]
    assert sorted(e["page_index"] for e in skipped) == [1, 2]
    assert all(e["session_id"] == session for e in skipped)
    assert any(e.get("msg") == "invalid LLM output, asking again" for e in worker.seen)
    assert any(e.get("msg") == "questions generated" for e in worker.seen)
    private = [
        *(url.split("//", 1)[1] for url in urls), "private-0", "private-1", hidden_host,
        EMAIL, SESSION_TITLE, SOURCE_TITLE, SET_TITLE, good_key, missing_key, *SOURCE_TEXT,
    ]  # fmt: skip
    assert [text for text in private if any(text in line for line in logged)] == []
