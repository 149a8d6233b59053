"""Entry point: browsing-session processing by hand.

    learning-jobs sessions process SESSION_ID [--wait]    start its ai-processing workflow now

The app does the same when a session ends (`jobs/ai_processing/starters.py`,
`process_session_now`); otherwise the `ai-processing` schedule picks it up within 5 minutes.
A start while the session's workflow (`session-<id>`) is running leaves that one alone.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from learning_platform.commands.arguments import CommandParser, database_id
from learning_platform.commands.process_exit import exits_without_teardown, reports_operator_errors
from learning_platform.core.database import check_database, create_engine, resolve_database_url
from learning_platform.core.settings import Settings, get_settings
from learning_platform.jobs.ai_processing.contracts import ProcessSessionResult, session_workflow_id
from learning_platform.jobs.ai_processing.starters import process_session_now
from learning_platform.temporal.connection import connect


async def process(settings: Settings, session_id: int, wait: bool) -> int:
    engine = create_engine(resolve_database_url(settings), pool_size=1)
    try:
        await check_database(engine)
        client = await connect(settings)
        started = await process_session_now(
            client, engine, session_id=session_id, task_queue=settings.task_queue
        )
    finally:
        await engine.dispose()
    workflow_id = session_workflow_id(session_id)
    print(f"{workflow_id} {'started' if started else 'already running'}")
    if wait:
        handle = client.get_workflow_handle(workflow_id, result_type=ProcessSessionResult)
        result = await handle.result()
        print(f"{workflow_id} {result.outcome}" + (f": {result.reason}" if result.reason else ""))
        return 0 if result.outcome == "completed" else 2
    return 0


@exits_without_teardown
@reports_operator_errors
def main(argv: Sequence[str] | None = None) -> None:
    parser = CommandParser(prog="learning-jobs sessions", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("process", help="start a processing session's workflow now")
    start.add_argument("session_id", type=database_id)
    start.add_argument("--wait", action="store_true", help="wait for the outcome")
    args = parser.parse_args(argv)
    sys.exit(asyncio.run(process(get_settings(), args.session_id, args.wait)))
