"""`learning-jobs migrate [--wait-seconds N]`: bring DATABASE_URL's schema to the head.

The image's one-shot `migrate` service runs this before any worker or API starts. Running it
again changes nothing and says so. With --wait-seconds it first waits up to N seconds for the
database to accept connections, so start order holds even where the container engine does not
wait for the database's healthcheck (podman-compose with podman < 4.6).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from asyncpg import CannotConnectNowError
from sqlalchemy.engine import Connection, make_url

from learning_platform.commands.arguments import CommandParser, bounded_seconds
from learning_platform.commands.process_exit import reports_operator_errors
from learning_platform.core.database import check_database, create_engine
from learning_platform.core.errors import UnavailableError, UsageError
from learning_platform.core.settings import get_settings
from learning_platform.migrations import alembic_config, upgrade


def _heads_of(connection: Connection) -> set[str]:
    return set(MigrationContext.configure(connection).get_current_heads())


async def _current_revisions(database_url: str) -> set[str]:
    engine = create_engine(database_url, pool_size=1)
    try:
        await check_database(engine)
        async with engine.connect() as connection:
            return await connection.run_sync(_heads_of)
    finally:
        await engine.dispose()


def current_revisions(database_url: str) -> set[str]:
    """The revisions the database is at (empty before the first migration)."""
    return asyncio.run(_current_revisions(database_url))


def _unreachable(exc: BaseException) -> bool:
    """True for "not accepting connections yet" (refused, unknown host, starting up, timeout);
    False for what waiting cannot fix (wrong password, no such database)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError | CannotConnectNowError):
            return True
        seen = getattr(seen, "orig", None) or seen.__cause__
    return False


def wait_for_database(database_url: str, timeout_seconds: float) -> set[str]:
    """current_revisions(), retried while the database is unreachable, for at most
    `timeout_seconds`; then exits saying where it looked (host and port, never the password)."""
    deadline = time.monotonic() + timeout_seconds
    delay = 0.25
    while True:
        try:
            return current_revisions(database_url)
        except Exception as exc:
            if not _unreachable(exc):
                raise
            if time.monotonic() + delay > deadline:
                url = make_url(database_url)
                raise UnavailableError(
                    f"the database at {url.host}:{url.port or 5432}/{url.database} did not accept "
                    f"connections within {timeout_seconds:g} s ({type(exc).__name__}: {exc}); "
                    "check that it runs and that DATABASE_URL names its host and port"
                ) from exc
            print(f"waiting for the database ({type(exc).__name__})", file=sys.stderr, flush=True)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def applied_between(database_url: str, before: set[str], after: set[str]) -> list[tuple[str, str]]:
    """(revision, description) of what moving from `before` to `after` ran, oldest first."""
    script = ScriptDirectory.from_config(alembic_config(database_url))

    def reached(heads: set[str]) -> list[tuple[str, str]]:
        if not heads:
            return []
        return [(r.revision, r.doc) for r in script.iterate_revisions(tuple(heads), "base")]

    already = {revision for revision, _ in reached(before)}
    return [step for step in reversed(reached(after)) if step[0] not in already]


@reports_operator_errors
def main(argv: Sequence[str] | None = None) -> None:
    parser = CommandParser(prog="learning-jobs migrate", description=__doc__)
    parser.add_argument(
        "--wait-seconds",
        type=bounded_seconds(3600),
        default=0,
        help="wait up to this long for the database to accept connections (default: no wait)",
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    if settings.database_url is None:
        raise UsageError("DATABASE_URL is not set: point it at the application's PostgreSQL")
    database_url = settings.database_url.get_secret_value()
    before = wait_for_database(database_url, args.wait_seconds)
    upgrade(database_url)
    after = current_revisions(database_url)
    applied = applied_between(database_url, before, after)
    for revision, description in applied:
        print(f"applied {revision}: {description}")
    state = ", ".join(sorted(after))
    print(f"database at {state}" if applied else f"already up to date at {state}")
