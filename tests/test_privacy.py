"""Users' browsing history stays out of Temporal: histories read raw from the server (a client
with the SDK's default converter, no codec) hold no URL, title, e-mail or page text — without
the codec because workflows pass ids and counts, and with it every payload is encrypted."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowHistory

from contracts.ai_processing import ProcessSessionResult
from learning_platform.payload_codec import ENCODING
from learning_platform.settings import Settings
from scheduling.declarations import declared_schedules
from scheduling.sync import apply, full_id, plan
from tests.ai_processing_helpers import add_processing_session, rows, summarising_responder
from tests.factories import add_user
from tests.fake_openai import FakeOpenAI
from tests.history_payloads import (
    codec_payloads,
    history_payloads,
    payloads_in,
    processed_session_history,
    raw_client,
)
from tests.pages_server import serving_pages

EMAIL = "private.person@example.com"
SESSION_TITLE = "Reading about my diagnosis"
# What the pages, their titles, the summaries and the mind map say (tests/pages_server.py).
PAGE_TEXT = ["Spaced repetition", "Forgetting curve", "learning scientists", "How memory works"]


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
