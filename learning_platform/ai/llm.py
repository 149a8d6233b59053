"""An OpenAI-compatible client that returns validated JSON (Chat Completions + JSON schema).

One POST to `{base_url}/chat/completions` per request, over a shared `httpx` connection pool;
there are no retries here: Temporal retries the activity instead, with the backoff and
`Retry-After` that `activities.llm_errors` derives from the errors raised here. (The `openai`
SDK did the same in ≈ 5 ms of CPU per request — typed-dict transforms of the request and
Pydantic models of the response — against ≈ 1.5 ms here: bench/ai_processing.)
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx
from prometheus_client import Counter

from learning_platform.core.errors import ServiceError
from learning_platform.core.settings import Settings
from learning_platform.core.tracing import TRACER
from learning_platform.jobs.contracts import TokenUsage

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_BASE_URL = "https://api.openai.com/v1"

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
    def __init__(self, client: httpx.AsyncClient, model: str, max_reasks: int = 2) -> None:
        """`client` has the server's base URL and the credentials (`build_llm`)."""
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
        body = {
            "model": self.model,
            "messages": messages,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": schema_name, "schema": schema, "strict": True},
            },
        }
        try:
            response = await self._client.post("chat/completions", json=body)
        except httpx.TimeoutException as exc:
            raise LlmRetryableError(f"LLM request timed out: {_describe(exc)}") from exc
        except httpx.TransportError as exc:
            raise LlmRetryableError(f"cannot reach the LLM server: {_describe(exc)}") from exc
        if response.status_code >= 400:
            raise _status_error(response)
        try:
            completion = response.json()
            used = TokenUsage(model=completion.get("model") or self.model, requests=1)
            usage = completion.get("usage") or {}
            used.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            used.completion_tokens = int(usage.get("completion_tokens") or 0)
            choices = completion.get("choices") or []
            if not choices or choices[0].get("finish_reason") == "length":
                return "", used
            message = choices[0].get("message") or {}
            content = message.get("content") or message.get("refusal") or ""
        except (ValueError, AttributeError, TypeError) as exc:
            # A proxy's error page, say: a later attempt may reach the real server.
            raise LlmRetryableError(
                f"the LLM server's answer is not a chat completion (HTTP "
                f"{response.status_code}, {type(exc).__name__})"
            ) from exc
        return str(content), used


def _describe(exc: httpx.HTTPError) -> str:
    return str(exc) or type(exc).__name__


def _json_object(content: str) -> dict[str, Any]:
    if not content.strip():
        raise ValueError("empty or truncated reply")
    value = json.loads(content)
    if not isinstance(value, dict):
        raise TypeError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _status_error(response: httpx.Response) -> LlmError:
    status = response.status_code
    message = _error_message(response)
    if status in _RETRYABLE_STATUSES:
        return LlmRetryableError(
            f"LLM server answered HTTP {status}: {message}",
            retry_after=retry_after_seconds(response.headers),
        )
    hint = {
        400: "the request was rejected; check OPENAI_MODEL supports JSON-schema output",
        401: "check OPENAI_API_KEY",
        403: "the key may not use this model or endpoint",
        404: "check OPENAI_MODEL and OPENAI_BASE_URL",
    }.get(status, "the server refused the request")
    return LlmPermanentError(f"LLM server answered HTTP {status}: {message} ({hint})")


def _error_message(response: httpx.Response) -> str:
    """The `error.message` of an OpenAI-style error body, else the start of the body."""
    try:
        error = response.json().get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:500]
    except (ValueError, AttributeError):
        pass
    return response.text[:200] or response.reason_phrase


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
    # Encoding drops the non-ASCII characters in C: no Python loop over the page's characters.
    ascii_chars = len(text) if text.isascii() else len(text.encode("ascii", "ignore"))
    return math.ceil(ascii_chars / _ASCII_CHARS_PER_TOKEN) + (len(text) - ascii_chars)


def truncate_to_token_budget(text: str, max_tokens: int) -> str:
    """The longest prefix of `text` whose estimated token count fits `max_tokens`, cut at a
    word boundary when one is near."""
    if estimate_tokens(text) <= max_tokens:
        return text
    # The longest prefix within the budget, by bisection over estimate_tokens (which grows
    # with the prefix): a few dozen estimates in C instead of a Python loop per character.
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if estimate_tokens(text[:middle]) <= max_tokens:
            low = middle
        else:
            high = middle - 1
    end = low
    cut = text[:end]
    space = cut.rfind(" ", max(0, end - 50))
    return cut[:space] if space > 0 else cut


def build_llm(settings: Settings) -> JsonLlm | None:
    """The LLM client, or None without OPENAI_API_KEY (the offline provider is used then)."""
    if not settings.openai_api_key:
        return None
    # The trailing slash makes "chat/completions" join below the base URL's path (/v1).
    base_url = (settings.openai_base_url or DEFAULT_BASE_URL).rstrip("/") + "/"
    client = httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {settings.openai_api_key.get_secret_value()}"},
        timeout=httpx.Timeout(
            settings.openai_timeout_seconds, connect=settings.openai_connect_timeout_seconds
        ),
        limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100),
    )
    return JsonLlm(client, settings.openai_model, max_reasks=settings.llm_max_reasks)
