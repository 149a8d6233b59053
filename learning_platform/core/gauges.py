"""Storing and reading the gauges in `job_gauges` (see metrics.JobGaugeCollector)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from learning_platform.core.metrics import StoredGauge
from learning_platform.core.models import JobGauge


async def store_gauge(conn: AsyncConnection, name: str, value: float) -> None:
    statement = insert(JobGauge).values(name=name, value=value, measured_at=func.now())
    statement = statement.on_conflict_do_update(
        index_elements=[JobGauge.name],
        set_={"value": statement.excluded.value, "measured_at": statement.excluded.measured_at},
    )
    await conn.execute(statement)


async def read_gauges(engine: AsyncEngine) -> dict[str, StoredGauge]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(JobGauge.name, JobGauge.value, JobGauge.measured_at))
        return {name: StoredGauge(value, measured_at) for name, value, measured_at in rows}
