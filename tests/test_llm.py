"""The LLM layer against a real HTTP server speaking the Chat Completions API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from temporalio.exceptions import ApplicationError

from activities.llm_errors import as_application_error
from learning_platform.ai.llm import (
    MAX_RESPONSE_BYTES,
    JsonLlm,
    LlmPermanentError,
    LlmRetryableError,
    build_llm,
    estimate_tokens,
    truncate_to_token_budget,
)
from learning_platform.core.settings import Settings
from learning_platform.jobs.ai_processing.ai import PAGE_SUMMARY_SCHEMA, parse_page_summary
from tests.fake_openai import FakeOpenAI, Reply

SUMMARY = {"title": "Spacing", "summary": "Spaced practice beats cramming.", "key_points": ["a"]}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI.running() as server:
        yield server


@pytest.fixture
async def llm(fake: FakeOpenAI) -> AsyncIterator[JsonLlm]:
    fake.requests.clear()
    settings = Settings(**fake.settings_update(openai_timeout_seconds=0.5))
    built = build_llm(settings)
    assert built is not None
    yield built
    await built.aclose()


async def ask(llm: JsonLlm) -> Any:
    return await llm.complete_json(
        system="s",
        user="u",
        schema=PAGE_SUMMARY_SCHEMA,
        schema_name="page_summary",
        parse=parse_page_summary,
    )


async def test_structured_output_request_and_usage(fake: FakeOpenAI, llm: JsonLlm) -> None:
    fake.script(Reply.json(SUMMARY))
    summary, usage = await ask(llm)
    assert summary.summary == SUMMARY["summary"]
    assert usage.requests == 1 and usage.prompt_tokens >= 0 and usage.completion_tokens > 0
    request = fake.requests[0]
    assert request.body["response_format"]["type"] == "json_schema"
    assert request.body["response_format"]["json_schema"]["strict"] is True
    assert request.schema_name == "page_summary"
    assert request.body["model"] == fake.model


async def test_429_is_retryable_with_retry_after(fake: FakeOpenAI, llm: JsonLlm) -> None:
    fake.script(Reply.error(429, retry_after=7))
    with pytest.raises(LlmRetryableError) as caught:
        await ask(llm)
    assert caught.value.retry_after == 7
    assert len(fake.requests) == 1, "the SDK's own retries must be off"
    converted = as_application_error(caught.value)
    assert not converted.non_retryable
    assert converted.next_retry_delay == timedelta(seconds=7)


@pytest.mark.parametrize("reply", [Reply.error(500), Reply.error(503), Reply.slow(2)])
async def test_server_errors_and_timeouts_are_retryable(
    fake: FakeOpenAI, llm: JsonLlm, reply: Reply
) -> None:
    fake.script(reply)
    with pytest.raises(LlmRetryableError) as caught:
        await ask(llm)
    assert caught.value.retry_after is None
    assert as_application_error(caught.value).next_retry_delay is None


@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_client_errors_are_permanent(fake: FakeOpenAI, llm: JsonLlm, status: int) -> None:
    fake.script(Reply.error(status))
    with pytest.raises(LlmPermanentError, match=f"HTTP {status}") as caught:
        await ask(llm)
    converted = as_application_error(caught.value)
    assert isinstance(converted, ApplicationError) and converted.non_retryable
    assert f"HTTP {status}" in converted.message


async def test_malformed_json_then_valid_json_is_reasked(fake: FakeOpenAI, llm: JsonLlm) -> None:
    fake.script(Reply.text('{"title": "cut off'), Reply.json(SUMMARY))
    summary, usage = await ask(llm)
    assert summary.title == "Spacing"
    assert usage.requests == 2
    reask = fake.requests[1].messages
    assert reask[-2] == {"role": "assistant", "content": '{"title": "cut off'}
    assert "not usable" in reask[-1]["content"]


async def test_output_invalid_after_reasks_is_permanent(fake: FakeOpenAI, llm: JsonLlm) -> None:
    empty_summary = {**SUMMARY, "summary": " "}
    fake.script(*[Reply.json(empty_summary)] * 3)
    with pytest.raises(LlmPermanentError, match=r"3 attempts.*summary is empty"):
        await ask(llm)
    assert len(fake.requests) == 3


def test_no_api_key_means_offline() -> None:
    assert build_llm(Settings(openai_api_key=None)) is None


def test_truncation_keeps_within_the_estimate() -> None:
    english = "spaced repetition improves recall " * 2000
    cut = truncate_to_token_budget(english, 500)
    assert estimate_tokens(cut) <= 500 < estimate_tokens(english)
    assert english.startswith(cut) and len(cut) > 1000
    korean = "간격 반복 학습은 기억을 돕는다 " * 500
    assert estimate_tokens(truncate_to_token_budget(korean, 300)) <= 300
    assert truncate_to_token_budget("short", 10) == "short"


async def test_requests_are_counted_by_outcome(fake: FakeOpenAI, llm: JsonLlm) -> None:
    def counted(outcome: str) -> float:
        return REGISTRY.get_sample_value("llm_requests_total", {"outcome": outcome}) or 0.0

    before = {outcome: counted(outcome) for outcome in ("ok", "retryable_error", "permanent_error")}
    fake.script(Reply.json(SUMMARY), Reply.error(503), Reply.error(401))
    await ask(llm)
    with pytest.raises(LlmRetryableError):
        await ask(llm)
    with pytest.raises(LlmPermanentError):
        await ask(llm)
    assert {outcome: counted(outcome) - before[outcome] for outcome in before} == {
        "ok": 1,
        "retryable_error": 1,
        "permanent_error": 1,
    }


async def test_an_unreachable_server_is_retryable() -> None:
    settings = Settings(openai_api_key="k", openai_base_url="http://127.0.0.1:9/v1")
    llm = build_llm(settings)
    assert llm is not None
    with pytest.raises(LlmRetryableError, match="cannot reach the LLM server"):
        await ask(llm)
    await llm.aclose()


def test_one_client_serves_successive_event_loops(fake: FakeOpenAI) -> None:
    """Its connection pool belongs to the loop that made it; another loop gets its own."""
    llm = build_llm(Settings(**fake.settings_update()))
    assert llm is not None

    async def ask_title() -> str:
        fake.script(Reply.json(SUMMARY))
        summary, _ = await ask(llm)
        return str(summary.title)

    assert asyncio.run(ask_title()) == "Spacing"
    assert asyncio.run(ask_title()) == "Spacing"
    asyncio.run(llm.aclose())


async def test_an_answer_too_large_to_be_a_completion_is_not_read_whole(
    fake: FakeOpenAI, llm: JsonLlm
) -> None:
    fake.script(Reply.text("x" * (MAX_RESPONSE_BYTES + 1)))
    with pytest.raises(LlmRetryableError, match=r"larger than 4,194,304 bytes"):
        await ask(llm)
