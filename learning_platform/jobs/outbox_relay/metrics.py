"""Prometheus metrics of the outbox relay (counters in the process that delivers; the backlog
gauges are read from the database at scrape time by every worker)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from prometheus_client import Counter, Histogram
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from learning_platform.core.metrics import StoredGauge

BACKLOG_GAUGE = "outbox_backlog_events"
OLDEST_AGE_GAUGE = "outbox_oldest_pending_age_seconds"

DELIVERED = Counter("outbox_delivered", "Outbox events handled and removed", ["event_type"])
FAILED = Counter("outbox_failed", "Failed delivery attempts of outbox events", ["event_type"])
DEAD_LETTERED = Counter(
    "outbox_dead_lettered", "Outbox events moved to the dead-letter table", ["event_type"]
)
DELIVERY_LATENCY = Histogram(
    "outbox_delivery_latency_seconds",
    "From the event's transaction to its handled-and-removed commit",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)


async def read_backlog(engine: AsyncEngine) -> Mapping[str, StoredGauge]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT count(*) AS backlog, "
                    "coalesce(extract(epoch FROM now() - min(created_at)), 0) AS oldest "
                    "FROM outbox_events"
                )
            )
        ).one()
    now = datetime.now(UTC)
    return {
        BACKLOG_GAUGE: StoredGauge(float(row.backlog), now),
        OLDEST_AGE_GAUGE: StoredGauge(float(row.oldest), now),
    }
