"""Entry point: the outbox's dead letters (events that failed OUTBOX_MAX_ATTEMPTS times).

    learning-jobs outbox dead-letters list [--limit 50]
    learning-jobs outbox dead-letters requeue ID [ID ...]     back to the outbox, attempts reset
    learning-jobs outbox dead-letters requeue --all

Fix the cause first (a handler bug, a missing row): a requeued event that fails again comes
back here after another OUTBOX_MAX_ATTEMPTS attempts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence

from learning_platform.commands.arguments import CommandParser, bounded_int, database_id
from learning_platform.commands.process_exit import reports_operator_errors
from learning_platform.core.database import check_database, create_engine, resolve_database_url
from learning_platform.core.settings import get_settings
from learning_platform.jobs.outbox_relay import dead_letters

MAX_LISTED = 10_000


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = CommandParser(prog="learning-jobs outbox", description=__doc__.split("\n")[0])
    area = parser.add_subparsers(dest="area", required=True)
    letters = area.add_parser("dead-letters").add_subparsers(dest="command", required=True)
    listing = letters.add_parser("list", help="oldest first")
    listing.add_argument("--limit", type=bounded_int(1, MAX_LISTED), default=50)
    requeue = letters.add_parser("requeue", help="move dead letters back to the outbox")
    requeue.add_argument("ids", type=database_id, nargs="*")
    requeue.add_argument("--all", action="store_true", help="every dead letter")
    args = parser.parse_args(argv)
    if args.command == "requeue" and bool(args.ids) == args.all:
        parser.error("requeue takes either IDs or --all")
    return args


async def run(args: argparse.Namespace) -> None:
    engine = create_engine(resolve_database_url(get_settings()), pool_size=1)
    try:
        await check_database(engine)
        if args.command == "list":
            async with engine.connect() as conn:
                rows = await dead_letters.list_dead_letters(conn, args.limit)
            for row in rows:
                print(
                    f"{row.id}\t{row.event_type}\t{row.aggregate_type}:{row.aggregate_id}\t"
                    f"attempts={row.attempts}\t{row.dead_lettered_at:%Y-%m-%d %H:%M:%S%z}\t"
                    f"{row.last_error}\t{json.dumps(row.payload)}"
                )
            print(f"{len(rows)} dead letter(s)")
            return
        total = 0
        while True:
            async with engine.begin() as conn:
                moved = await dead_letters.requeue(conn, args.ids, everything=args.all)
            total += moved
            if not args.all or moved == 0:
                break
        print(f"requeued {total} event(s)")
    finally:
        await engine.dispose()


@reports_operator_errors
def main(argv: Sequence[str] | None = None) -> None:
    asyncio.run(run(parse_args(argv)))
