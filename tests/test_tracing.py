"""Traces: one request followed from the code that wrote an outbox event, through the relay,
into the workflow it starts, its activities and LLM call, and the notification it writes.

Spans go to the SDK's in-memory exporter. Tracing is switched on the way an operator does it
(an OTLP endpoint in the settings), which gives the clients the TracingInterceptor; the test
installs its own in-memory provider instead of calling configure_tracing, so nothing is sent.
"""

from __future__ import annotations

import asyncio
import queue
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from temporalio.client import Client
from temporalio.worker import Worker

from activities.outbox_handlers import build_handlers
from activities.registry import Dependencies
from learning_platform.core.settings import Settings
from learning_platform.core.tracing import current_trace_context, tracing_enabled
from learning_platform.jobs.ai_processing.starters import process_session_now
from learning_platform.jobs.browsing_sessions.contracts import (
    CleanupStaleSessionsInput,
    UpdateMetricsInput,
)
from learning_platform.jobs.question_sets import queries as question_sets
from learning_platform.jobs.question_sets.contracts import (
    QuestionGenerationResult,
    generation_workflow_id,
)
from learning_platform.temporal.connection import connect
from tests.ai_processing_helpers import add_processing_session, summarising_responder
from tests.factories import add_user
from tests.fake_openai import FakeOpenAI, Reply
from tests.learning_helpers import drain
from tests.loopback import serve_in_thread
from tests.pages_server import serving_pages
from tests.question_set_factories import rows
from tests.test_question_generation import llm_questions, stored_source
from tests.worker_process import running_worker
from worker import create_workers
from workflows.browsing_sessions import CleanupStaleSessions, UpdateMetrics

EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def in_memory_tracing() -> Iterator[None]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(provider)
    yield


@pytest.fixture
def traced_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"otel_exporter_otlp_endpoint": "http://127.0.0.1:4318"})


@pytest.fixture
def fake_llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI.running() as fake:
        yield fake


@pytest.fixture
async def traced_client(traced_settings: Settings) -> Client:
    return await connect(traced_settings)


@pytest.fixture(scope="module")
def pages() -> Iterator[str]:
    with serving_pages() as base:
        yield base


@pytest.fixture
async def traced_worker(
    traced_client: Client, traced_settings: Settings, engine: AsyncEngine, fake_llm: FakeOpenAI
) -> AsyncIterator[Worker]:
    settings = traced_settings.model_copy(
        update=fake_llm.settings_update(crawler_allowed_hosts=["127.0.0.1"])
    )
    deps = Dependencies(settings=settings, engine=engine, temporal=traced_client)
    main, ai = create_workers(traced_client, deps)
    async with ai, main:
        yield main


def test_tracing_is_off_without_an_endpoint(settings: Settings) -> None:
    assert not tracing_enabled(settings)
    assert not tracing_enabled(
        settings.model_copy(
            update={"otel_exporter_otlp_endpoint": "http://x:4318", "otel_sdk_disabled": True}
        )
    )
    # Outside a span there is no context to carry: outbox rows get NULL.
    assert current_trace_context() is None


def by_name(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [span for span in spans if span.name == name]
    assert len(found) == 1, (name, sorted(span.name for span in spans))
    return found[0]


def child_of(child: ReadableSpan, parent: ReadableSpan) -> bool:
    assert child.parent is not None, f"{child.name} has no parent"
    return (
        child.context.trace_id == parent.context.trace_id
        and child.parent.span_id == parent.context.span_id
    )


async def test_a_question_set_request_is_one_trace_through_outbox_workflow_llm_and_notification(
    engine: AsyncEngine,
    traced_client: Client,
    traced_settings: Settings,
    traced_worker: Worker,
    fake_llm: FakeOpenAI,
) -> None:
    fake_llm.script(Reply.json(llm_questions("traced")))
    user = await add_user(engine)
    source = await stored_source(engine, traced_settings, user, b"Ebbinghaus " * 50, "text/plain")
    EXPORTER.clear()

    tracer = trace.get_tracer("the-platform-app")
    with tracer.start_as_current_span("POST /question-sets") as request_span:
        async with engine.begin() as conn:
            requested = await question_sets.request_question_set(
                conn, user_id=user, source_id=source, title="Traced quiz", question_count=2
            )
    # The relay runs outside that span: only the outbox row carries the context on.
    assert trace.get_current_span().get_span_context().is_valid is False
    await drain(engine, build_handlers(traced_client, traced_settings))
    workflow_id = generation_workflow_id(
        requested.question_set_id, requested.attempt, traced_settings.schedule_id_prefix
    )
    result = await traced_client.get_workflow_handle(
        workflow_id, result_type=QuestionGenerationResult
    ).result()
    assert result.outcome == "completed"

    spans = [
        s
        for s in EXPORTER.get_finished_spans()
        if s.context.trace_id == request_span.get_span_context().trace_id
    ]
    root = by_name(spans, "POST /question-sets")
    deliver = by_name(spans, "deliver question_set.requested")
    start = by_name(spans, "StartWorkflow:QuestionGeneration")
    run = by_name(spans, "RunWorkflow:QuestionGeneration")
    generate = by_name(spans, "RunActivity:generate_staged_questions")
    llm = by_name(spans, "llm question_set")
    save = by_name(spans, "RunActivity:complete_staged_question_generation")
    notify = by_name(spans, "write notification")

    assert child_of(deliver, root)
    assert child_of(start, deliver)
    # TracingInterceptor's workflow spans are instants; what the workflow starts hangs off
    # the span that started it.
    assert child_of(run, start)
    assert child_of(by_name(spans, "StartActivity:generate_staged_questions"), start)
    assert child_of(generate, by_name(spans, "StartActivity:generate_staged_questions"))
    assert child_of(llm, generate)
    assert child_of(save, by_name(spans, "StartActivity:complete_staged_question_generation"))
    assert child_of(notify, save)
    # What an operator searches by.
    attributes: dict[str, Any] = dict(deliver.attributes or {})
    assert attributes["question_set.id"] == requested.question_set_id
    assert (run.attributes or {})["temporalWorkflowID"] == workflow_id
    assert (llm.attributes or {})["llm.outcome"] == "ok"
    assert (notify.attributes or {})["user.id"] == user
    [(trace_id,)] = await rows(engine, "SELECT trace_id FROM notifications")
    assert trace_id == format(root.context.trace_id, "032x")


async def test_an_ended_session_is_one_trace_through_its_crawls_llm_calls_and_notification(
    engine: AsyncEngine,
    traced_client: Client,
    traced_worker: Worker,
    fake_llm: FakeOpenAI,
    pages: str,
) -> None:
    fake_llm.responder = summarising_responder
    user = await add_user(engine)
    session = await add_processing_session(engine, user, [f"{pages}/article/1", f"{pages}/missing"])
    EXPORTER.clear()

    with trace.get_tracer("the-platform-app").start_as_current_span("POST /sessions/end"):
        await process_session_now(
            traced_client, engine, session_id=session, task_queue=traced_worker.task_queue
        )
    handle = traced_client.get_workflow_handle(f"session-{session}")
    assert (await handle.result())["outcome"] == "completed"

    spans = EXPORTER.get_finished_spans()
    root = by_name(list(spans), "POST /sessions/end")
    spans = [s for s in spans if s.context.trace_id == root.context.trace_id]
    start = by_name(spans, "StartWorkflow:ProcessSession")
    summarize = by_name(spans, "RunActivity:summarize_session")
    pages_spans = [s for s in spans if s.name == "summarize page"]
    crawls = [s for s in spans if s.name == "crawl"]
    assert child_of(start, root)
    assert child_of(summarize, by_name(spans, "StartActivity:summarize_session"))
    assert child_of(by_name(spans, "StartActivity:summarize_session"), start)
    # Pages by their position in the session, not their URLs (the user's browsing history).
    assert {(s.attributes or {})["page.index"] for s in pages_spans} == {0, 1}
    assert all((s.attributes or {})["session.id"] == session for s in pages_spans)
    exported = [dict(s.attributes or {}) for s in spans]
    assert not any(pages in str(value) for attributes in exported for value in attributes.values())
    assert all(child_of(page, summarize) for page in pages_spans)
    assert all(any(child_of(c, page) for page in pages_spans) for c in crawls) and len(crawls) == 2
    failed_crawl = next(c for c in crawls if (c.attributes or {})["page.index"] == 1)
    assert not failed_crawl.status.is_ok
    llm_summary = by_name(spans, "llm page_summary")
    assert any(child_of(llm_summary, page) for page in pages_spans)
    assert child_of(
        by_name(spans, "llm mind_map"), by_name(spans, "RunActivity:build_session_mind_map")
    )
    notify = by_name(spans, "write notification")
    assert child_of(notify, by_name(spans, "RunActivity:complete_session_with_stored_map"))
    assert (notify.attributes or {})["notification.kind"] == "session.completed"


async def test_a_run_started_without_a_trace_has_activity_spans_named_by_its_run(
    engine: AsyncEngine, client: Client, traced_worker: Worker
) -> None:
    EXPORTER.clear()
    # `client` has no tracing: like a schedule, the CLI or the UI starting the run.
    await client.execute_workflow(
        CleanupStaleSessions.run,
        CleanupStaleSessionsInput(),
        id="cleanup-stale-sessions-traced",
        task_queue=traced_worker.task_queue,
    )

    spans = list(EXPORTER.get_finished_spans())
    activity_span = by_name(spans, "RunActivity:fail_stale_sessions")
    assert activity_span.parent is None
    assert (activity_span.attributes or {})["temporalWorkflowID"] == "cleanup-stale-sessions-traced"


async def test_without_tracing_the_outbox_and_notifications_carry_nothing(
    engine: AsyncEngine, client: Client, settings: Settings, worker: Worker
) -> None:
    user = await add_user(engine)
    source = await stored_source(engine, settings, user, b"Ebbinghaus " * 50, "text/plain")
    async with engine.begin() as conn:
        requested = await question_sets.request_question_set(
            conn, user_id=user, source_id=source, title="Untraced", question_count=2
        )
    assert await rows(engine, "SELECT trace_context FROM outbox_events") == [(None,)]
    await drain(engine, build_handlers(client, settings))
    workflow_id = generation_workflow_id(
        requested.question_set_id, requested.attempt, settings.schedule_id_prefix
    )
    await client.get_workflow_handle(workflow_id).result()
    assert [tuple(r) for r in await rows(engine, "SELECT trace_id FROM notifications")] == [(None,)]


class OtlpReceiver:
    """An OTLP/HTTP trace endpoint (POST /v1/traces, protobuf), as a collector would serve."""

    def __init__(self) -> None:
        self.span_names: queue.Queue[str] = queue.Queue()

    async def receive(self, request: Request) -> Response:
        export = ExportTraceServiceRequest.FromString(await request.body())
        for resource_spans in export.resource_spans:
            service = next(
                a.value.string_value
                for a in resource_spans.resource.attributes
                if a.key == "service.name"
            )
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.span_names.put(f"{service}/{span.name}")
        return Response(ExportTraceServiceResponse().SerializeToString())

    def wait_for(self, name: str, within: float = 30) -> None:
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            try:
                if self.span_names.get(timeout=left) == name:
                    return
            except queue.Empty:
                break
        raise AssertionError(f"no span {name!r} exported within {within}s")


async def test_a_worker_exports_its_spans_over_otlp_when_an_endpoint_is_set(
    engine: AsyncEngine, client: Client, settings: Settings
) -> None:
    receiver = OtlpReceiver()
    app = Starlette(routes=[Route("/v1/traces", receiver.receive, methods=["POST"])])
    with (
        serve_in_thread(app) as endpoint,
        running_worker(
            settings,
            OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
            OTEL_SERVICE_NAME="worker-under-test",
            OTEL_BSP_SCHEDULE_DELAY="100",
        ),
    ):
        await client.execute_workflow(
            UpdateMetrics.run,
            UpdateMetricsInput(),
            id=f"update-metrics-{uuid.uuid4()}",
            task_queue=settings.task_queue,
        )
        await asyncio.to_thread(
            receiver.wait_for, "worker-under-test/RunActivity:record_active_sessions"
        )
