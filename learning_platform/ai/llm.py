"""An OpenAI-compatible client that returns validated JSON (Chat Completions + JSON schema).

One POST to `{base_url}/chat/completions` per request over an `aiohttp` connection pool;
there are no retries here: Temporal retries the activity instead, with the backoff and
`Retry-After` that `activities.llm_errors` derives from the errors raised here.

Why not the `openai` SDK or `httpx`: per request, measured with 16 requests in flight
(bench/ai_processing, docs/benchmarks.md), the SDK took ≈ 5 ms of CPU (typed-dict transforms of
the request, Pydantic models of the response, on httpx), httpx alone 2.6 to 3.9 ms (its pool
checks every idle connection's socket on every request), aiohttp 0.75 ms. The worker makes one
request per page, so this was a fifth of its CPU (the crawler left httpx for the same reason).
"""

from __future__ import annotations

import json
import logging
import math
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import aiohttp
from prometheus_client import Counter

from learning_platform.core.errors import ServiceError
from learning_platform.core.http_sessions import LoopSession
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


@dataclass(frozen=True)
class LlmServer:
    """Where the Chat Completions API is and how to talk to it."""

    base_url: str
    api_key: str
    timeout_seconds: float
    connect_timeout_seconds: float


class _Connections:
    """The endpoint, its proxy and its connection pool (one aiohttp session per event loop)."""

    def __init__(self, server: LlmServer) -> None:
        self.url = server.base_url.rstrip("/") + "/chat/completions"
        # HTTPS_PROXY and friends apply, as they did with the SDK; read once here (aiohttp's
        # trust_env reads them, and ~/.netrc, in a thread on every request).
        host = urllib.parse.urlsplit(self.url).hostname or ""
        scheme = urllib.parse.urlsplit(self.url).scheme
        proxies = urllib.request.getproxies()
        self.proxy = None if urllib.request.proxy_bypass(host) else proxies.get(scheme)
        self._headers = {"Authorization": f"Bearer {server.api_key}"}
        self._timeout = aiohttp.ClientTimeout(
            total=server.timeout_seconds, connect=server.connect_timeout_seconds
        )
        self.pool = LoopSession(
            lambda: aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        )


class JsonLlm:
    def __init__(self, server: LlmServer, model: str, max_reasks: int = 2) -> None:
        self._connections = _Connections(server)
        self.model = model
        self._max_reasks = max_reasks

    @property
    def is_closed(self) -> bool:
        """No connection pool is open (none yet, or closed)."""
        return self._connections.pool.is_closed

    async def aclose(self) -> None:
        """Close the connection pool (a later request opens a new one); as httpx's `aclose`."""
        await self._connections.pool.close()

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
            async with self._connections.pool.get().post(
                self._connections.url,
                data=json.dumps(body),
                headers=_JSON,
                proxy=self._connections.proxy,
            ) as response:
                status, headers = response.status, response.headers
                content = await _read_capped(response)
        except TimeoutError as exc:
            raise LlmRetryableError(f"LLM request timed out: {_describe(exc)}") from exc
        except aiohttp.ClientError as exc:
            raise LlmRetryableError(f"cannot reach the LLM server: {_describe(exc)}") from exc
        if status >= 400:
            raise _status_error(status, headers, content)
        try:
            completion = json.loads(content)
            used = TokenUsage(model=completion.get("model") or self.model, requests=1)
            usage = completion.get("usage") or {}
            used.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            used.completion_tokens = int(usage.get("completion_tokens") or 0)
            choices = completion.get("choices") or []
            if not choices or choices[0].get("finish_reason") == "length":
                return "", used
            message = choices[0].get("message") or {}
            text = message.get("content") or message.get("refusal") or ""
        except (ValueError, AttributeError, TypeError) as exc:
            # A proxy's error page, say: a later attempt may reach the real server.
            raise LlmRetryableError(
                f"the LLM server's answer is not a chat completion (HTTP {status}, "
                f"{type(exc).__name__})"
            ) from exc
        return str(text), used


_JSON = {"Content-Type": "application/json"}

# A chat completion is kilobytes; a server (or a proxy in front of it) that sends more is not
# answering: the body is not read past this.
MAX_RESPONSE_BYTES = 4 * 1024 * 1024


class LlmBackedAi:
    """What a job's LLM-backed AI holds: the client, the token budget its text inputs are cut
    to (`truncate_to_token_budget`), and the `generator` recorded beside what it makes."""

    def __init__(self, llm: JsonLlm, token_budget: int) -> None:
        self._llm = llm
        self._budget = token_budget
        self.generator = f"openai:{llm.model}"


async def _read_capped(response: aiohttp.ClientResponse) -> bytes:
    body = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > MAX_RESPONSE_BYTES:
            raise LlmRetryableError(
                f"the LLM server's answer is larger than {MAX_RESPONSE_BYTES:,} bytes "
                f"(HTTP {response.status}); check OPENAI_BASE_URL points at the API"
            )
    return bytes(body)


def _describe(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _json_object(content: str) -> dict[str, Any]:
    if not content.strip():
        raise ValueError("empty or truncated reply")
    value = json.loads(content)
    if not isinstance(value, dict):
        raise TypeError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _status_error(status: int, headers: Mapping[str, str], content: bytes) -> LlmError:
    message = _error_message(content)
    if status in _RETRYABLE_STATUSES:
        return LlmRetryableError(
            f"LLM server answered HTTP {status}: {message}",
            retry_after=retry_after_seconds(headers),
        )
    hint = {
        400: "the request was rejected; check OPENAI_MODEL supports JSON-schema output",
        401: "check OPENAI_API_KEY",
        403: "the key may not use this model or endpoint",
        404: "check OPENAI_MODEL and OPENAI_BASE_URL",
    }.get(status, "the server refused the request")
    return LlmPermanentError(f"LLM server answered HTTP {status}: {message} ({hint})")


def _error_message(content: bytes) -> str:
    """The `error.message` of an OpenAI-style error body, else the start of the body."""
    try:
        error = json.loads(content).get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:500]
    except (ValueError, AttributeError):
        pass
    return content[:200].decode(errors="replace") or "no message"


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
    server = LlmServer(
        base_url=settings.openai_base_url or DEFAULT_BASE_URL,
        api_key=settings.openai_api_key.get_secret_value(),
        timeout_seconds=settings.openai_timeout_seconds,
        connect_timeout_seconds=settings.openai_connect_timeout_seconds,
    )
    return JsonLlm(server, settings.openai_model, max_reasks=settings.llm_max_reasks)
