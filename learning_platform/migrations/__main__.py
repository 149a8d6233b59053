"""`python -m learning_platform.migrations`: bring DATABASE_URL's schema to the head.

The image's one-shot `migrate` service runs this before any worker or API starts. Running it
again changes nothing and says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from learning_platform.command_line import CommandParser
from learning_platform.database import check_database, create_engine
from learning_platform.errors import UsageError
from learning_platform.migrations import alembic_config, upgrade
from learning_platform.process_exit import reports_operator_errors
from learning_platform.settings import get_settings


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
    CommandParser(prog="python -m learning_platform.migrations", description=__doc__).parse_args(
        argv
    )
    settings = get_settings()
    if settings.database_url is None:
        raise UsageError("DATABASE_URL is not set: point it at the application's PostgreSQL")
    database_url = settings.database_url.get_secret_value()
    before = current_revisions(database_url)
    upgrade(database_url)
    after = current_revisions(database_url)
    applied = applied_between(database_url, before, after)
    for revision, description in applied:
        print(f"applied {revision}: {description}")
    state = ", ".join(sorted(after))
    print(f"database at {state}" if applied else f"already up to date at {state}")


if __name__ == "__main__":
    main()
