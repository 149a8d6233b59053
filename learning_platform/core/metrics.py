"""Prometheus metrics of a process: its own (prometheus-client) and the Temporal SDK's.

The SDK exports through its own Rust-side HTTP endpoint; `SdkMetricsCollector` reads that
endpoint (bound to loopback on a free port) at scrape time so that one port, METRICS_PORT, serves
everything. `JobGaugeCollector` exports gauges that a job computed once and stored in the
`job_gauges` table, so every worker reports the same, latest value whichever worker ran the job.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import urllib.request
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

log = logging.getLogger(__name__)

# Gauges that jobs store in `job_gauges`: name → help text. Only these are exported.
JOB_GAUGES: Mapping[str, str] = {
    "mindhit_sessions_active": "Sessions recording or paused, as last counted by update-metrics",
    "outbox_backlog_events": "Outbox events not yet delivered (read at scrape time)",
    "outbox_oldest_pending_age_seconds": "Age of the oldest undelivered outbox event",
}


@dataclass(frozen=True)
class StoredGauge:
    value: float
    measured_at: datetime


def observe_many(histogram: Histogram, values: Sequence[float]) -> None:
    """`histogram.observe(v)` for each value, in one pass: a bucket per distinct bucket index,
    the sum once. The relay observes a batch at a time, where observe() per event (a scan of
    the bounds and a lock each) cost more than the rest of the event's Python. Uses the
    client's own fields (_upper_bounds, _buckets, _sum; tests/test_metrics.py checks that the
    result equals observe()'s)."""
    if not values:
        return
    bounds = histogram._upper_bounds  # ends with +Inf: every value has a bucket
    for index, count in Counter(bisect_left(bounds, value) for value in values).items():
        histogram._buckets[index].inc(count)
    histogram._sum.inc(sum(values))


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def sdk_runtime_with_prometheus() -> tuple[Runtime, str]:
    """A Temporal runtime exporting SDK metrics on a private loopback port; returns its URL."""
    address = f"127.0.0.1:{free_loopback_port()}"
    runtime = Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=address, counters_total_suffix=True, durations_as_seconds=True
            )
        )
    )
    return runtime, f"http://{address}/metrics"


class SdkMetricsCollector(Collector):
    def __init__(self, url: str) -> None:
        self._url = url

    def collect(self) -> Iterator[Metric]:
        try:
            with urllib.request.urlopen(self._url, timeout=2) as response:
                text = response.read().decode()
        except OSError as exc:
            log.warning("temporal SDK metrics unavailable", extra={"error": str(exc)})
            return
        yield from text_string_to_metric_families(text)


class JobGaugeCollector(Collector):
    """Reads stored gauges on the worker's event loop at scrape time (from the HTTP thread)."""

    def __init__(
        self,
        read: Callable[[], Coroutine[Any, Any, Mapping[str, StoredGauge]]],
        loop: asyncio.AbstractEventLoop,
        timeout_seconds: float = 3.0,
    ) -> None:
        self._read = read
        self._loop = loop
        self._timeout = timeout_seconds

    def _stored(self) -> Mapping[str, StoredGauge]:
        if not self._loop.is_running():
            return {}
        # The registry calls collect() on registration too; the coroutine must not block there.
        if _running_loop() is self._loop:
            return {}
        future = asyncio.run_coroutine_threadsafe(self._read(), self._loop)
        try:
            return future.result(timeout=self._timeout)
        except Exception as exc:  # a scrape must not fail because the database is away
            future.cancel()
            log.warning("job gauges unavailable", extra={"error": repr(exc)})
            return {}

    def collect(self) -> Iterator[Metric]:
        stored = self._stored()
        for name, help_text in JOB_GAUGES.items():
            if name not in stored:
                continue
            yield GaugeMetricFamily(name, help_text, value=stored[name].value)
            yield GaugeMetricFamily(
                f"{name}_measured_timestamp_seconds",
                f"When {name} was last measured (Unix time)",
                value=stored[name].measured_at.timestamp(),
            )


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def serve_metrics(port: int, registry: CollectorRegistry = REGISTRY) -> None:
    """Serve /metrics on `port` (0 disables it) in a background thread."""
    if port:
        start_http_server(port, registry=registry)
