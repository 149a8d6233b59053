"""The resumable-batch loop's sizing: batches keep the configured size while they are quick and
shrink after one that outlasted the time bound; the count and the walk stay exact."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from temporalio.testing import ActivityEnvironment

from activities.batches import run_batches
from learning_platform.core.batches import BatchOutcome, Keyset, keyset_outcome, next_limit


def test_a_quick_batch_keeps_the_configured_size() -> None:
    assert next_limit(5000, most=5000, took=0.1, target=1.0) == 5000


def test_a_slow_batch_makes_the_next_one_proportionally_smaller() -> None:
    assert next_limit(5000, most=5000, took=4.0, target=1.0) == 1250
    assert next_limit(3, most=5000, took=100.0, target=1.0) == 1  # never none


def test_the_size_grows_back_at_most_doubling_and_never_past_the_configured_one() -> None:
    assert next_limit(1000, most=5000, took=0.01, target=1.0) == 2000
    assert next_limit(1000, most=5000, took=0.8, target=1.0) == 1250
    assert next_limit(4000, most=5000, took=0.01, target=1.0) == 5000
    assert next_limit(4000, most=5000, took=0.0, target=1.0) == 5000


class Walk:
    """A batch over the keys 1..rows that records the limit of every call."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.limits: list[int] = []

    async def __call__(
        self, conn: AsyncConnection, *, after: Keyset | None, limit: int
    ) -> BatchOutcome:
        self.limits.append(limit)
        start = 0 if after is None else int(after[0])
        keys = list(range(start + 1, min(start + limit, self.rows) + 1))
        return keyset_outcome(
            changed=len(keys),
            read=len(keys),
            limit=limit,
            after=after,
            last_key=(keys[-1],) if keys else None,
        )


async def test_quick_batches_all_take_the_configured_limit(engine: AsyncEngine) -> None:
    walk = Walk(rows=23)

    total = await ActivityEnvironment().run(run_batches, engine, walk, limit=5)

    assert total == 23
    assert walk.limits == [5, 5, 5, 5, 5]


async def test_batches_after_one_past_the_time_bound_are_smaller_and_the_total_exact(
    engine: AsyncEngine,
) -> None:
    walk = Walk(rows=9)

    # Every batch outlasts a bound of 0 s: after the first, one row at a time.
    total = await ActivityEnvironment().run(run_batches, engine, walk, limit=5, target=0.0)

    assert total == 9
    assert walk.limits == [5, 1, 1, 1, 1, 1]
