"""OpenTelemetry traces, off unless an OTLP endpoint is configured.

With OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) set, a process that
calls `configure_tracing` exports spans over OTLP/HTTP, configured by the standard OTEL_*
variables (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_HEADERS, ...), and
its Temporal client carries the trace into every workflow it starts and every activity those
run (`TracingInterceptor`). Unset, no provider is installed: the API's spans are no-ops, no
interceptor is added, and no trace context is written with outbox events or notifications.

Context written by one process and continued by another (an outbox event's, a notification's)
is the W3C `traceparent` carrier.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import propagate, trace
from temporalio.client import Interceptor

from learning_platform.core.settings import Settings

# The SDK, the exporter and the Temporal interceptor are imported only when tracing is on: a
# process with tracing off loads just the (small) API.

TRACER = trace.get_tracer("learning_jobs")


def tracing_enabled(settings: Settings) -> bool:
    endpoint = settings.otel_exporter_otlp_traces_endpoint or settings.otel_exporter_otlp_endpoint
    return bool(endpoint) and not settings.otel_sdk_disabled


def configure_tracing(settings: Settings) -> None:
    """Install the OTLP-exporting tracer provider for this process, if tracing is enabled."""
    if not tracing_enabled(settings):
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.otel_service_name})
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)


def client_interceptors(settings: Settings) -> list[Interceptor]:
    """The Temporal client's (and so its workers') interceptors: tracing when enabled."""
    if not tracing_enabled(settings):
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor()]


def current_trace_context() -> dict[str, str] | None:
    """The current span's context as a W3C carrier, or None outside a recorded span."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None


def current_trace_id() -> str | None:
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else None


@contextmanager
def continued_span(
    name: str, carrier: Mapping[str, str] | None, attributes: Mapping[str, Any]
) -> Iterator[trace.Span]:
    """A span continuing the trace in `carrier` (a new trace without one)."""
    context = propagate.extract(carrier) if carrier else None
    with TRACER.start_as_current_span(name, context=context, attributes=attributes) as span:
        yield span
