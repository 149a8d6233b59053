"""Learning records and the per-user statistics derived from them (set-based SQL).

Streaks are derived from `learning_days`, the distinct calendar days (SCHEDULE_TIMEZONE) on
which a user learned: a duplicate event adds no day and an out-of-order one fills in its day,
so recomputing the run of consecutive days always gives the same answer whatever the order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from learning_platform.core.batches import (
    BatchOutcome,
    Keyset,
    after_parameters,
    keyset_outcome,
    rows_after,
)
from learning_platform.jobs.outbox_relay.events import enqueue_event

LEARNING_RECORDED = "learning.recorded"


async def record_learning(
    conn: AsyncConnection, *, user_id: int, question_id: int, solved_at: datetime, correct: bool
) -> int:
    """Store one solved question and its `learning.recorded` event in the caller's transaction.

    The event's aggregate is the user, so one user's events are delivered in order.
    """
    record_id = (
        await conn.execute(
            text(
                "INSERT INTO learning_records (user_id, question_id, solved_at, correct) "
                "VALUES (:u, :q, :t, :c) RETURNING id"
            ),
            {"u": user_id, "q": question_id, "t": solved_at, "c": correct},
        )
    ).scalar_one()
    await enqueue_event(
        conn,
        aggregate_type="user",
        aggregate_id=user_id,
        event_type=LEARNING_RECORDED,
        payload={"learning_record_id": record_id},
    )
    return int(record_id)


# Marks the records applied (a record already applied by a duplicate event is not returned),
# adds their days, and adds their counts. Weekly counters follow the latest week seen: a record
# of an older week than `week_start` (late, after the weekly reset) counts only in the totals.
# PostgreSQL runs every data-modifying CTE to completion, read or not.
_APPLY_RECORDS = text(
    """
    WITH applied AS (
        UPDATE learning_records SET stats_applied = true
         WHERE id = ANY(CAST(:ids AS bigint[])) AND NOT stats_applied
        RETURNING user_id, correct, CAST(solved_at AT TIME ZONE :tz AS date) AS day
    ), new_days AS (
        INSERT INTO learning_days (user_id, day)
        SELECT DISTINCT user_id, day FROM applied ORDER BY user_id, day
        ON CONFLICT DO NOTHING
        RETURNING user_id
    ), weeks AS (
        SELECT user_id, CAST(date_trunc('week', day) AS date) AS week,
               count(*) AS solved, count(*) FILTER (WHERE correct) AS correct
          FROM applied GROUP BY 1, 2
    ), per_user AS (
        SELECT user_id, sum(solved) AS solved, sum(correct) AS correct, max(week) AS week,
               (array_agg(solved ORDER BY week DESC))[1] AS week_solved,
               (array_agg(correct ORDER BY week DESC))[1] AS week_correct
          FROM weeks GROUP BY user_id
    ), upserted AS (
        INSERT INTO learn_stats AS s (user_id, total_solved, total_correct, week_start,
                                      weekly_solved, weekly_correct, version)
        SELECT user_id, solved, correct, week, week_solved, week_correct, 1
          FROM per_user ORDER BY user_id
        ON CONFLICT (user_id) DO UPDATE SET
            total_solved = s.total_solved + EXCLUDED.total_solved,
            total_correct = s.total_correct + EXCLUDED.total_correct,
            weekly_solved = CASE
                WHEN s.week_start IS NULL OR EXCLUDED.week_start > s.week_start
                    THEN EXCLUDED.weekly_solved
                WHEN EXCLUDED.week_start = s.week_start
                    THEN s.weekly_solved + EXCLUDED.weekly_solved
                ELSE s.weekly_solved END,
            weekly_correct = CASE
                WHEN s.week_start IS NULL OR EXCLUDED.week_start > s.week_start
                    THEN EXCLUDED.weekly_correct
                WHEN EXCLUDED.week_start = s.week_start
                    THEN s.weekly_correct + EXCLUDED.weekly_correct
                ELSE s.weekly_correct END,
            week_start = GREATEST(s.week_start, EXCLUDED.week_start),
            version = s.version + 1,
            updated_at = now()
    )
    SELECT DISTINCT user_id FROM new_days
    """
)

# Runs of consecutive days per user ("gaps and islands": day minus its rank is constant within
# a run). `latest_run` is the run ending at the user's last day.
_STREAKS = """
    runs AS (
        SELECT user_id, count(*) AS length, max(day) AS last_day
          FROM (SELECT user_id, day,
                       day - CAST(row_number() OVER (PARTITION BY user_id ORDER BY day) AS int)
                           AS run
                  FROM learning_days WHERE {users}) numbered
         GROUP BY user_id, run
    ), streaks AS (
        SELECT DISTINCT ON (user_id) user_id, length AS latest_run, last_day,
               max(length) OVER (PARTITION BY user_id) AS longest
          FROM runs ORDER BY user_id, last_day DESC
    )
"""

# A streak is alive while its last day is today or yesterday; the handler knows only the wall
# clock, the daily job uses its scheduled time (see reset_broken_streaks_batch).
_UPDATE_STREAKS = text(
    "WITH"
    + _STREAKS.format(users="user_id = ANY(CAST(:users AS bigint[]))")
    + """
    UPDATE learn_stats s
       SET last_learned_date = k.last_day,
           longest_streak = k.longest,
           current_streak = CASE
               WHEN k.last_day >= CAST(now() AT TIME ZONE :tz AS date) - 1 THEN k.latest_run
               ELSE 0 END
      FROM streaks k
     WHERE s.user_id = k.user_id
    """
)


async def apply_learning_records(
    conn: AsyncConnection, record_ids: Sequence[int], timezone: str
) -> None:
    """Count the records into learn_stats, at most once each (the `learning.recorded` effect)."""
    new_day_users = (
        await conn.execute(_APPLY_RECORDS, {"ids": list(record_ids), "tz": timezone})
    ).scalars()
    users = sorted(new_day_users)
    if users:
        await conn.execute(_UPDATE_STREAKS, {"users": users, "tz": timezone})


# A batch is the next `:limit` users after the previous batch's last one, in key order; the
# batch then reads and writes the user_id range up to its last user (one index range scan,
# where probing each id of a list cost a descent of the primary key per user).
#
# The daily job walks every user, not a partial index of live streaks (current_streak > 0):
# such an index makes every streak change a non-HOT update (the handler's too), and with most
# streaks live it made the job 40 % slower (docs/benchmarks.md, learn-stats).
_USERS_BOUND = """
    SELECT max(user_id) AS last_user, count(*) AS visited
      FROM (SELECT user_id FROM learn_stats WHERE {after}
             ORDER BY user_id LIMIT :limit) batch
    """


def _batch_users(column: str, after: Keyset | None) -> str:
    """The batch's users: after the previous batch's last one, up to this one's last."""
    return f"{rows_after((column,), after)} AND {column} <= :last_user"


@dataclass(frozen=True)
class _Bound:
    """The next batch: the `visited` users after `after`, up to `last_user` (None: none left)."""

    last_user: int | None
    visited: int
    limit: int
    after: Keyset | None

    def parameters(self, **values: object) -> dict[str, object]:
        return {"last_user": self.last_user, **after_parameters(self.after), **values}

    def outcome(self, changed: int) -> BatchOutcome:
        return keyset_outcome(
            changed=changed,
            read=self.visited,
            limit=self.limit,
            after=self.after,
            last_key=(self.last_user,) if self.last_user is not None else None,
        )


async def _next_bound(conn: AsyncConnection, *, after: Keyset | None, limit: int) -> _Bound:
    sql = _USERS_BOUND.format(after=rows_after(("user_id",), after))
    row = (await conn.execute(text(sql), {"limit": limit} | after_parameters(after))).one()
    return _Bound(last_user=row.last_user, visited=row.visited, limit=limit, after=after)


# No row locks are taken before the UPDATE: it re-checks the condition on each row's newest
# version (READ COMMITTED re-evaluates it after waiting for a concurrent writer), so a day
# recorded meanwhile keeps its streak and no row is written twice.
_RESET_BROKEN_STREAKS = """
    UPDATE learn_stats
       SET current_streak = 0, version = version + 1, updated_at = now()
     WHERE {users}
       AND current_streak > 0
       AND (last_learned_date IS NULL OR last_learned_date < :yesterday)
    """


async def reset_broken_streaks_batch(
    conn: AsyncConnection, *, yesterday: date, after: Keyset | None, limit: int
) -> BatchOutcome:
    """Zero the current streak of users whose last learning day is before `yesterday`."""
    bound = await _next_bound(conn, after=after, limit=limit)
    if not bound.visited:
        return bound.outcome(0)
    sql = _RESET_BROKEN_STREAKS.format(users=_batch_users("user_id", after))
    result = await conn.execute(text(sql), bound.parameters(yesterday=yesterday))
    return bound.outcome(result.rowcount)  # type: ignore[attr-defined]


# Totals are counted from the covering index ix_learning_records_user_id_solved_at (an
# index-only scan of the batch's range), not from records scattered over the heap.
#
# Without row locks, a learning.recorded handler may commit between this statement's snapshot
# and its write of a user; the stale totals must not overwrite the handler's. The handler bumps
# `version`, so the UPDATE, re-checking `version` on the newest row version, skips that user;
# `due` > `updated` tells the caller to run the batch again with a fresh snapshot.
_RECALCULATE = (
    "WITH"
    + _STREAKS
    + """
    , totals AS (
        SELECT user_id, count(*) AS solved, count(*) FILTER (WHERE correct) AS correct
          FROM learning_records
         WHERE {users} AND stats_applied
         GROUP BY user_id
    ), fresh AS (
        SELECT s.user_id, s.version,
               coalesce(t.solved, 0) AS total_solved,
               coalesce(t.correct, 0) AS total_correct,
               coalesce(k.longest, 0) AS longest_streak,
               k.last_day AS last_learned_date,
               CASE WHEN k.last_day >= :yesterday THEN k.latest_run ELSE 0 END AS current_streak,
               (s.total_solved, s.total_correct, s.longest_streak, s.last_learned_date,
                s.current_streak)
                 IS DISTINCT FROM
               (coalesce(t.solved, 0), coalesce(t.correct, 0), coalesce(k.longest, 0),
                k.last_day, CASE WHEN k.last_day >= :yesterday THEN k.latest_run ELSE 0 END)
                 AS corrected,
               s.week_start IS NULL OR s.week_start < :week_start AS new_week
          FROM learn_stats s
          LEFT JOIN totals t USING (user_id)
          LEFT JOIN streaks k USING (user_id)
         WHERE {s_users}
    ), updated AS (
        UPDATE learn_stats s
           SET total_solved = f.total_solved,
               total_correct = f.total_correct,
               longest_streak = f.longest_streak,
               last_learned_date = f.last_learned_date,
               current_streak = f.current_streak,
               weekly_solved = CASE WHEN f.new_week THEN 0 ELSE s.weekly_solved END,
               weekly_correct = CASE WHEN f.new_week THEN 0 ELSE s.weekly_correct END,
               week_start = CASE WHEN f.new_week THEN :week_start ELSE s.week_start END,
               version = s.version + 1,
               updated_at = now()
          FROM fresh f
         WHERE s.user_id = f.user_id AND {s_users}
           AND s.version = f.version AND (f.corrected OR f.new_week)
        RETURNING f.corrected
    )
    SELECT (SELECT count(*) FROM fresh WHERE corrected OR new_week) AS due,
           count(*) AS updated,
           count(*) FILTER (WHERE corrected) AS corrected
      FROM updated
    """
)


async def recalculate_batch(
    conn: AsyncConnection, *, week_start: date, yesterday: date, after: Keyset | None, limit: int
) -> BatchOutcome:
    """Reset weekly counters to the week starting `week_start` and recompute the cumulative
    statistics from the records; `changed` counts users whose cumulative values were wrong."""
    bound = await _next_bound(conn, after=after, limit=limit)
    if not bound.visited:
        return bound.outcome(0)
    statement = text(
        _RECALCULATE.format(
            users=_batch_users("user_id", after), s_users=_batch_users("s.user_id", after)
        )
    )
    parameters = bound.parameters(yesterday=yesterday, week_start=week_start)
    corrected = 0
    while True:
        row = (await conn.execute(statement, parameters)).one()
        corrected += row.corrected
        if row.updated == row.due:
            return bound.outcome(corrected)
