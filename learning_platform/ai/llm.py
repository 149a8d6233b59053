"""An OpenAI-compatible client that returns validated JSON (Chat Completions + JSON schema).

The SDK's own retries are off: Temporal retries the activity instead, with the backoff and
`Retry-After` that `activities.llm_errors` derives from the errors raised here.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar, cast

import openai
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam
from openai.types.shared_params import ResponseFormatJSONSchema
from prometheus_client import Counter

from learning_platform.core.errors import ServiceError
from learning_platform.core.settings import Settings
from learning_platform.core.tracing import TRACER
from learning_platform.jobs.contracts import TokenUsage

log = logging.getLogger(__name__)

T = TypeVar("T")

# Statuses a later attempt can succeed on (rate limits, overload, server faults).
_RETRYABLE_STATUSES = frozenset({408, 409, 425, 429}) | frozenset(range(500, 600))

LLM_REQUESTS = Counter("llm_requests", "LLM requests by outcome", ["outcome"])
# Every outcome exported from the start at 0, so the first error shows in rate() and alerts.
for _outcome in ("ok", "retryable_error", "permanent_error"):
    LLM_REQUESTS.labels(outcome=_outcome)


class LlmError(ServiceError):
    """Base of the errors `JsonLlm` raises; the message says what went wrong and what to do."""


class LlmRetryableError(LlmError):
    """Rate limit, server error, timeout or lost connection: a later attempt may succeed."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LlmPermanentError(LlmError):
    """Bad request, credentials or model, or output that stayed invalid: retrying cannot help."""


class InvalidOutputError(ServiceError, ValueError):
    """Raised by a `parse` callback when the JSON has the right shape but unusable content."""


class JsonLlm:
    def __init__(self, client: AsyncOpenAI, model: str, max_reasks: int = 2) -> None:
        self._client = client
        self.model = model
        self._max_reasks = max_reasks

    async def complete_json(
        self,
        *,
        system: str,
        user: str,
        schema: dict[str, Any],
        schema_name: str,
        parse: Callable[[dict[str, Any]], T],
    ) -> tuple[T, TokenUsage]:
        """Ask for JSON matching `schema`, parse it with `parse`; re-ask on invalid output.

        `parse` raises ValueError/KeyError/TypeError for output it cannot use; the error text
        goes back to the model with the re-ask.
        """
        messages: list[dict[str, str]] = [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
        ]
        usage = TokenUsage(model=self.model)
        problem = ""
        for _ in range(1 + self._max_reasks):
            content, used = await self._ask(messages, schema, schema_name)
            usage += used
            try:
                return parse(_json_object(content)), usage
            except (ValueError, KeyError, TypeError) as exc:
                problem = str(exc) or type(exc).__name__
                log.warning("invalid LLM output, asking again", extra={"problem": problem})
            messages += [
                {"role": "assistant", "content": content},
                {
                    "role": "user",
                    "content": f"That reply was not usable ({problem}). Reply again with only "
                    f"a JSON object that matches the '{schema_name}' schema.",
                },
            ]
        raise LlmPermanentError(
            f"model {self.model!r} gave no usable '{schema_name}' JSON in "
            f"{1 + self._max_reasks} attempts (last problem: {problem}); "
            "check that the model supports structured output"
        )

    async def _ask(
        self, messages: list[dict[str, str]], schema: dict[str, Any], schema_name: str
    ) -> tuple[str, TokenUsage]:
        attributes = {"llm.model": self.model, "llm.schema": schema_name}
        with TRACER.start_as_current_span(f"llm {schema_name}", attributes=attributes) as span:
            try:
                answer = await self._request(messages, schema, schema_name)
            except LlmError as exc:
                retryable = isinstance(exc, LlmRetryableError)
                outcome = "retryable_error" if retryable else "permanent_error"
                LLM_REQUESTS.labels(outcome=outcome).inc()
                span.set_attribute("llm.outcome", outcome)
                raise
            LLM_REQUESTS.labels(outcome="ok").inc()
            span.set_attribute("llm.outcome", "ok")
            return answer

    async def _request(
        self, messages: list[dict[str, str]], schema: dict[str, Any], schema_name: str
    ) -> tuple[str, TokenUsage]:
        response_format: ResponseFormatJSONSchema = {
            "type": "json_schema",
            "json_schema": {"name": schema_name, "schema": schema, "strict": True},
        }
        try:
            completion = await self._client.chat.completions.create(
                model=self.model,
                messages=cast(list[ChatCompletionMessageParam], messages),
                response_format=response_format,
            )
        except openai.APIStatusError as exc:
            raise _status_error(exc) from exc
        except openai.APITimeoutError as exc:
            raise LlmRetryableError(f"LLM request timed out: {exc}") from exc
        except openai.APIConnectionError as exc:
            raise LlmRetryableError(f"cannot reach the LLM server: {exc}") from exc
        used = TokenUsage(model=completion.model or self.model, requests=1)
        if completion.usage is not None:
            used.prompt_tokens = completion.usage.prompt_tokens
            used.completion_tokens = completion.usage.completion_tokens
        if not completion.choices:
            return "", used
        choice = completion.choices[0]
        if choice.finish_reason == "length":
            return "", used
        return choice.message.content or choice.message.refusal or "", used


def _json_object(content: str) -> dict[str, Any]:
    if not content.strip():
        raise ValueError("empty or truncated reply")
    value = json.loads(content)
    if not isinstance(value, dict):
        raise TypeError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _status_error(exc: openai.APIStatusError) -> LlmError:
    status = exc.status_code
    if status in _RETRYABLE_STATUSES:
        return LlmRetryableError(
            f"LLM server answered HTTP {status}: {exc.message}",
            retry_after=retry_after_seconds(exc.response.headers),
        )
    hint = {
        400: "the request was rejected; check OPENAI_MODEL supports JSON-schema output",
        401: "check OPENAI_API_KEY",
        403: "the key may not use this model or endpoint",
        404: "check OPENAI_MODEL and OPENAI_BASE_URL",
    }.get(status, "the server refused the request")
    return LlmPermanentError(f"LLM server answered HTTP {status}: {exc.message} ({hint})")


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """`retry-after-ms` or `Retry-After` (seconds or an HTTP date), if present and sane."""
    if (millis := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


# No exact tokenizer is used: tiktoken fetches its encodings over the network at run time,
# which air-gapped workers cannot do. This estimate never undercounts for the common BPE
# vocabularies: English averages about 4 ASCII characters per token (counted here as 3), and
# CJK or other non-ASCII characters rarely take more than one token each (counted as 1).
_ASCII_CHARS_PER_TOKEN = 3


def estimate_tokens(text: str) -> int:
    ascii_chars = sum(1 for char in text if char.isascii())
    return math.ceil(ascii_chars / _ASCII_CHARS_PER_TOKEN) + (len(text) - ascii_chars)


def truncate_to_token_budget(text: str, max_tokens: int) -> str:
    """The longest prefix of `text` whose estimated token count fits `max_tokens`, cut at a
    word boundary when one is near."""
    if estimate_tokens(text) <= max_tokens:
        return text
    budget = max_tokens * _ASCII_CHARS_PER_TOKEN
    end = len(text)
    for index, char in enumerate(text):
        budget -= 1 if char.isascii() else _ASCII_CHARS_PER_TOKEN
        if budget < 0:
            end = index
            break
    cut = text[:end]
    space = cut.rfind(" ", max(0, end - 50))
    return cut[:space] if space > 0 else cut


def build_llm(settings: Settings) -> JsonLlm | None:
    """The LLM client, or None without OPENAI_API_KEY (the offline provider is used then)."""
    if not settings.openai_api_key:
        return None
    client = AsyncOpenAI(
        api_key=settings.openai_api_key.get_secret_value(),
        base_url=settings.openai_base_url,
        max_retries=0,
        timeout=openai.Timeout(
            settings.openai_timeout_seconds, connect=settings.openai_connect_timeout_seconds
        ),
    )
    return JsonLlm(client, settings.openai_model, max_reasks=settings.llm_max_reasks)
