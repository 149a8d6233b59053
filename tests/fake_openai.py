"""A scriptable OpenAI-compatible Chat Completions server on loopback, for the real `openai`
client (tests and benchmarks).

    with FakeOpenAI.running() as fake:
        settings = settings.model_copy(update=fake.settings_update())
        fake.script(Reply.error(429, retry_after=1), Reply.json({"summary": "..."}))
        fake.responder = lambda request: Reply.json(...)   # after the script runs out
        ...
        assert fake.requests[0].schema_name == "page_summary"

Each request to POST /v1/chat/completions takes the next scripted `Reply` (FIFO); when the
script is empty, `responder(request)` decides. The default responder answers with an instance
built from the request's JSON schema (`example_for_schema`), so any structured-output caller
gets valid JSON without scripting. Every request is recorded in `requests`.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.loopback import serve_in_thread


@dataclass
class RecordedRequest:
    body: dict[str, Any]
    received_at: float = field(default_factory=time.monotonic)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", []))

    @property
    def user_text(self) -> str:
        return "\n".join(m["content"] for m in self.messages if m["role"] == "user")

    @property
    def schema_name(self) -> str | None:
        spec = self.body.get("response_format", {}).get("json_schema", {})
        return spec.get("name")

    @property
    def schema(self) -> dict[str, Any]:
        return dict(self.body.get("response_format", {}).get("json_schema", {}).get("schema", {}))


@dataclass
class Reply:
    """One scripted answer. Build with the class methods."""

    status: int = 200
    content: str | None = None
    error_body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    gate: threading.Event | None = None  # held until set (e.g. to kill a worker meanwhile)

    @classmethod
    def json(cls, value: Any, *, delay: float = 0.0) -> Reply:
        return cls(content=json.dumps(value), delay=delay)

    @classmethod
    def text(cls, content: str, *, delay: float = 0.0) -> Reply:
        """Raw assistant content, e.g. malformed JSON."""
        return cls(content=content, delay=delay)

    @classmethod
    def error(cls, status: int, *, retry_after: float | None = None, message: str = "") -> Reply:
        headers = {} if retry_after is None else {"retry-after": f"{retry_after:g}"}
        body = {"error": {"message": message or f"scripted {status}", "type": "fake"}}
        return cls(status=status, error_body=body, headers=headers)

    @classmethod
    def slow(cls, seconds: float) -> Reply:
        """Answers (validly, from the schema) only after `seconds`: a client timeout."""
        return cls(delay=seconds)


def example_for_schema(schema: dict[str, Any]) -> Any:
    """A small valid instance of a JSON schema (object/array/string/number/integer/boolean,
    enum, minItems)."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {name: example_for_schema(sub) for name, sub in schema["properties"].items()}
    if kind == "array":
        return [
            example_for_schema(schema["items"]) for _ in range(max(1, schema.get("minItems", 1)))
        ]
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 1))
    if kind == "boolean":
        return True
    return f"example {schema.get('description', 'text')}"


def schema_example_responder(request: RecordedRequest) -> Reply:
    return Reply.json(example_for_schema(request.schema))


class FakeOpenAI:
    def __init__(self) -> None:
        self.base_url = ""
        self.model = "fake-model"
        self.requests: list[RecordedRequest] = []
        self.responder: Callable[[RecordedRequest], Reply] = schema_example_responder
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0  # most requests answered at once (checks concurrency limits)

    @classmethod
    @contextmanager
    def running(cls) -> Iterator[FakeOpenAI]:
        fake = cls()
        app = Starlette(routes=[Route("/v1/chat/completions", fake._handle, methods=["POST"])])
        with serve_in_thread(app) as url:
            fake.base_url = f"{url}/v1"
            yield fake

    def settings_update(self, **extra: Any) -> dict[str, Any]:
        """Settings fields pointing the platform's LLM client here."""
        return {
            "openai_api_key": SecretStr("test-key"),
            "openai_base_url": self.base_url,
            "openai_model": self.model,
            **extra,
        }

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    def requests_for(self, schema_name: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.schema_name == schema_name]

    async def wait_for_requests(self, count: int, within_seconds: float = 10.0) -> None:
        """Poll (no event crosses the server thread) until `count` requests arrived."""
        deadline = time.monotonic() + within_seconds
        while len(self.requests) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.requests)} of {count} LLM requests arrived")
            await asyncio.sleep(0.02)

    async def _handle(self, request: Request) -> Response:
        recorded = RecordedRequest(body=await request.json())
        with self._lock:
            self.requests.append(recorded)
            reply = self._script.popleft() if self._script else None
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(recorded, reply)
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _answer(self, recorded: RecordedRequest, reply: Reply | None) -> Response:
        if reply is None:
            reply = self.responder(recorded)
        if reply.gate is not None:
            await asyncio.to_thread(reply.gate.wait)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.status != 200:
            return JSONResponse(reply.error_body, status_code=reply.status, headers=reply.headers)
        content = reply.content
        if content is None:
            content = json.dumps(example_for_schema(recorded.schema))
        return JSONResponse(self._completion(recorded, content))

    def _completion(self, request: RecordedRequest, content: str) -> dict[str, Any]:
        prompt_tokens = sum(len(str(m.get("content", ""))) for m in request.messages) // 4
        completion_tokens = max(1, len(content) // 4)
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.body.get("model", self.model),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
