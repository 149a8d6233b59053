"""Hostile and careless use of the operator commands, run as the processes an operator starts
against the test PostgreSQL and Temporal: every bad argument, unknown thing or unreachable
server ends in one line that says what to fix, exit status 2 (usage) or 1 (a dependency), and
no traceback unless `--debug`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from learning_platform.commands.arguments import MAX_DATABASE_ID
from learning_platform.core.database import resolve_database_url
from learning_platform.core.settings import Settings
from tests.command_runs import one_line_failures, run_at_once
from tests.loopback import refused_ports
from tests.worker_process import worker_env

PASSWORD = "s3cr3t-db-password-7f1c"
BEYOND_INT64 = str(MAX_DATABASE_ID + 1)
BACKFILL = ["schedules.py", "backfill", "cleanup-stale-sessions"]


@pytest.fixture
def refused() -> Iterator[list[int]]:
    with refused_ports(2) as ports:
        yield ports


def unreachable_database_url(port: int) -> str:
    """A URL with a password, on a loopback port that refuses connections."""
    return f"postgresql://app:{PASSWORD}@127.0.0.1:{port}/app"


def test_bad_arguments_and_unknown_things_end_in_one_line_and_status_2(
    settings: Settings,
) -> None:
    env = worker_env(settings)
    cases = {
        "backfill in year 99999": (
            [*BACKFILL, "--start", "99999-01-01T00:00", "--end", "2026-01-01T00:00"],
            "argument --start: '99999-01-01T00:00' is not an ISO 8601 time",
        ),
        "backfill before the calendar": (
            # 00:00 in Asia/Seoul is the year before year 1 in UTC.
            [*BACKFILL, "--start", "0001-01-01T00:00", "--end", "2026-01-01T00:00"],
            "argument --start: '0001-01-01T00:00' is not",
        ),
        "backfill ending before it starts": (
            [*BACKFILL, "--start", "2026-11-21T00:00", "--end", "2026-11-20T00:00"],
            "--end 2026-11-20T00:00:00+09:00 must be after --start",
        ),
        "describe an unknown schedule": (
            ["schedules.py", "describe", "no-such-job"],
            "unknown schedule 'no-such-job'; declared: ",
        ),
        "trigger an unknown schedule": (
            ["schedules.py", "trigger", "x" * 5000],
            "unknown schedule 'xxxxx",
        ),
        "pause an unknown schedule": (
            ["schedules.py", "pause", "no-such-job", "--note", "n"],
            "unknown schedule 'no-such-job'",
        ),
        "a pause note longer than Temporal takes": (
            ["schedules.py", "pause", "cleanup-stale-sessions", "--note", "n" * 100_000],
            "Temporal refused the request: INVALID_ARGUMENT: Schedule notes exceeds limit.",
        ),
        "an unknown command": (["schedules.py", "frobnicate"], "invalid choice: 'frobnicate'"),
        "a namespace that does not exist": (
            ["schedules.py", "list"],
            "Temporal namespace 'no-such-namespace' does not exist",
        ),
        "list a negative number of dead letters": (
            ["-m", "learning_platform", "outbox", "dead-letters", "list", "--limit", "-1"],
            "argument --limit: must be an integer from 1 to 10000, got '-1'",
        ),
        "requeue an id beyond int64": (
            ["-m", "learning_platform", "outbox", "dead-letters", "requeue", BEYOND_INT64],
            f"must be an id from 1 to {MAX_DATABASE_ID}",
        ),
        "requeue a 5000-digit id": (
            ["-m", "learning_platform", "outbox", "dead-letters", "requeue", "9" * 5000],
            "(5000 characters)",
        ),
        "process a session id beyond int64": (
            ["-m", "learning_platform", "sessions", "process", BEYOND_INT64],
            "argument session_id: must be an id from 1",
        ),
        "process a session that does not exist": (
            ["-m", "learning_platform", "sessions", "process", "424242"],
            "session 424242 does not exist",
        ),
        "a token for a user id beyond int64": (
            ["-m", "learning_platform", "api", "token", BEYOND_INT64],
            "argument user_id: must be an id from 1",
        ),
        "a token that never expires": (
            ["-m", "learning_platform", "api", "token", "1", "--ttl-minutes", "nan"],
            "argument --ttl-minutes: must be minutes from 1 to",
        ),
        "migrations with an argument they do not take": (
            ["-m", "learning_platform", "migrate", "--revision", "base"],
            "unrecognized arguments: --revision base",
        ),
        "a worker with an argument it does not take": (
            ["worker.py", "--once"],
            "unrecognized arguments: --once",
        ),
        "a Temporal address that is not one": (
            ["-m", "learning_platform", "sessions", "process", "1"],
            "TEMPORAL_ADDRESS '127.0.0.1:99999' is not a HOST:PORT address",
        ),
    }
    environments = {
        "a namespace that does not exist": {**env, "TEMPORAL_NAMESPACE": "no-such-namespace"},
        "a Temporal address that is not one": {**env, "TEMPORAL_ADDRESS": "127.0.0.1:99999"},
    }
    results = run_at_once(
        {name: (argv, environments.get(name, env)) for name, (argv, _) in cases.items()}
    )

    assert one_line_failures(results, 2, {name: want for name, (_, want) in cases.items()}) == []
    assert all(result.stdout == "" for result in results.values())
    assert len(results["trigger an unknown schedule"].stderr) < 500, "the id is shown cut"


def test_unreachable_servers_end_in_one_line_and_status_1_without_the_password(
    settings: Settings, refused: list[int]
) -> None:
    database_port, temporal_port = refused
    env = worker_env(settings)
    no_database = {**env, "DATABASE_URL": unreachable_database_url(database_port)}
    test_database = make_url(resolve_database_url(settings))
    no_such_db = {
        **env,
        "DATABASE_URL": test_database.set(database="no_such_db").render_as_string(False),
    }
    no_temporal = {**env, "TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}"}
    database_down = "/app is unreachable: Connection refused; check DATABASE_URL"
    temporal_down = f"Temporal at 127.0.0.1:{temporal_port} is unreachable (Connection refused)"
    cases = {
        "dead letters, database down": (
            ["-m", "learning_platform", "outbox", "dead-letters", "list"],
            no_database,
        ),
        "process a session, database down": (
            ["-m", "learning_platform", "sessions", "process", "1"],
            no_database,
        ),
        "migrations, database down": (["-m", "learning_platform", "migrate"], no_database),
        "schedules, Temporal down": (["schedules.py", "list"], no_temporal),
        "process a session, Temporal down": (
            ["-m", "learning_platform", "sessions", "process", "1"],
            no_temporal,
        ),
        "trigger before apply": (["schedules.py", "trigger", "cleanup-stale-sessions"], env),
        "a database that does not exist": (
            ["-m", "learning_platform", "outbox", "dead-letters", "list"],
            no_such_db,
        ),
    }
    expected = {
        name: 'is unreachable: database "no_such_db" does not exist'
        if "exist" in name
        else database_down
        if "database" in name
        else temporal_down
        if "Temporal" in name
        else "is declared but not in Temporal (namespace 'default'); run `schedules.py apply`"
        for name in cases
    }

    results = run_at_once(cases)

    assert one_line_failures(results, 1, expected) == []
    assert all(PASSWORD not in result.output for result in results.values())
    assert "check DATABASE_URL" in results["migrations, database down"].stderr
    assert "check TEMPORAL_ADDRESS" in results["schedules, Temporal down"].stderr


def test_debug_adds_the_traceback(settings: Settings, refused: list[int]) -> None:
    argv = ["-m", "learning_platform", "outbox", "dead-letters", "list", "--debug"]
    results = run_at_once(
        {
            "debug": (
                argv,
                {**worker_env(settings), "DATABASE_URL": unreachable_database_url(refused[0])},
            )
        }
    )

    debug = results["debug"]
    assert debug.returncode == 1
    assert debug.stderr.startswith("Traceback (most recent call last):")
    assert "ConnectionRefusedError" in debug.stderr
    assert debug.error_lines[-1].startswith("error: PostgreSQL at 127.0.0.1:")
    assert PASSWORD not in debug.output


async def dead_letter_ids(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT id FROM outbox_dead_letters ORDER BY id"))
        return [row.id for row in rows]


async def test_requeue_of_ids_that_do_not_exist_names_them_and_requeues_nothing(
    settings: Settings, engine: AsyncEngine
) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO outbox_dead_letters (id, aggregate_type, aggregate_id, event_type,"
                " payload, created_at, attempts, last_error)"
                " VALUES (7, 'test', 'A', 'test.event', '{}', now(), 5, 'boom')"
            )
        )
    env = worker_env(settings)
    requeue = ["-m", "learning_platform", "outbox", "dead-letters", "requeue"]

    mixed = run_at_once({"mixed": ([*requeue, "7", "900001", "900000", "7"], env)})["mixed"]
    left = await dead_letter_ids(engine)
    existing = run_at_once({"existing": ([*requeue, "7"], env)})["existing"]

    assert (
        one_line_failures(
            {"mixed": mixed}, 2, {"mixed": "no dead letter with id 900000, 900001; nothing was"}
        )
        == []
    )
    assert left == [7]
    assert (existing.returncode, existing.stdout) == (0, "requeued 1 event(s)\n"), existing.stderr
    assert await dead_letter_ids(engine) == []
