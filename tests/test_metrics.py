from __future__ import annotations

import asyncio
import uuid

import httpx
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from learning_platform.core.metrics import observe_many
from learning_platform.core.settings import Settings
from learning_platform.jobs.browsing_sessions.contracts import (
    UpdateMetricsInput,
    UpdateMetricsResult,
)
from tests.factories import add_session, add_user
from tests.worker_process import running_worker
from workflows.browsing_sessions import UpdateMetrics


def sample(metrics_text: str, name: str, **labels: str) -> float | None:
    """The sum of the samples called `name` whose labels include `labels`; None if none."""
    values = [
        s.value
        for family in text_string_to_metric_families(metrics_text)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    ]
    return sum(values) if values else None


async def scrape(port: int) -> str:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        response.raise_for_status()
        return response.text


async def test_every_worker_reports_the_latest_active_session_count(
    engine: AsyncEngine, client: Client, settings: Settings
) -> None:
    user = await add_user(engine)
    for status in ("recording", "recording", "paused", "processing", "completed", "failed"):
        await add_session(engine, user, status)

    with running_worker(settings) as first, running_worker(settings) as second:
        result: UpdateMetricsResult = await client.execute_workflow(
            UpdateMetrics.run,
            UpdateMetricsInput(),
            id=f"update-metrics-{uuid.uuid4()}",
            task_queue=settings.task_queue,
        )
        pages = await asyncio.gather(scrape(first.metrics_port), scrape(second.metrics_port))
        # Workflow logs are emitted when the workflow task completes, before the result returns.
        logged = [w.find_log("job completed", job="update-metrics") for w in (first, second)]

    assert result.active_sessions == 3
    for page in pages:
        assert sample(page, "mindhit_sessions_active") == 3
        assert (sample(page, "mindhit_sessions_active_measured_timestamp_seconds") or 0) > 0
        # The Temporal SDK's own metrics come through the same endpoint.
        assert "temporal_worker_task_slots_available" in page
    runs = sum(
        sample(page, "learning_jobs_runs_total", job="update-metrics", outcome="success") or 0
        for page in pages
    )
    assert runs == 1
    [completed] = [entry for entry in logged if entry is not None]
    assert completed["active_sessions"] == 3
    assert completed["duration_s"] >= 0
    assert completed["temporal_workflow"]["workflow_id"].startswith("update-metrics-")


def test_observe_many_counts_exactly_like_observe_per_value() -> None:
    # Bounds, values below, on, between and above them, and beyond the last finite bound.
    values = [0.0, 0.004, 0.005, 0.0051, 0.3, 0.3, 1.0, 7.5, 299.0, 301.0, 10_000.0]
    registries = [CollectorRegistry(), CollectorRegistry()]
    one_by_one, at_once = (
        Histogram("latency_seconds", "test", buckets=(0.005, 0.01, 0.5, 1, 300), registry=r)
        for r in registries
    )
    for value in values:
        one_by_one.observe(value)
    observe_many(at_once, values)
    observe_many(at_once, [])
    assert _samples(registries[1]) == _samples(registries[0])
    assert _samples(registries[0])[("latency_seconds_count", ())] == len(values)


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[str, ...]], float]:
    """Every sample but the creation time."""
    return {
        (sample.name, tuple(sorted(sample.labels.values()))): sample.value
        for family in registry.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    }
