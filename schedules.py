"""Entry point: the service's Temporal schedules as code.

    learning-jobs schedules apply                 create / update / prune to match the declarations
    learning-jobs schedules diff                  what apply would do, changing nothing
    learning-jobs schedules list                  declared schedules with state and next run
    learning-jobs schedules status [ID]           last run: outcome, duration, counts; pause
    learning-jobs schedules describe ID
    learning-jobs schedules pause ID --note "why"
    learning-jobs schedules unpause ID [--note "why"]
    learning-jobs schedules trigger ID            run now (the schedule's overlap policy applies)
    learning-jobs schedules backfill ID --start 2026-11-20T00:00 --end 2026-11-21T00:00
    learning-jobs schedules delete ID

IDs are the declared ones (e.g. cleanup-stale-sessions); times without an offset are in
SCHEDULE_TIMEZONE. Everything here can also be done with `temporal schedule ...` (see
docs/operations.md); `apply` keeps a pause and its note made either way.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, tzinfo

from temporalio.client import Client, ScheduleBackfill, ScheduleHandle, ScheduleOverlapPolicy
from temporalio.service import RPCError, RPCStatusCode

from learning_platform.commands.arguments import CommandParser, bounded_seconds, shown
from learning_platform.commands.process_exit import exits_without_teardown, reports_operator_errors
from learning_platform.core.errors import UnavailableError, UsageError
from learning_platform.core.settings import Settings, get_settings
from learning_platform.scheduling.declarations import declared_schedules
from learning_platform.scheduling.status import render, schedule_statuses
from learning_platform.scheduling.sync import apply, describe_or_none, full_id, plan
from learning_platform.temporal.connection import connect_when_ready

# Temporal keeps times as protobuf Timestamps: years 1 to 9999 in UTC. A schedule's first run
# is after 1970, so an earlier backfill can only be a typo.
EARLIEST_BACKFILL = datetime(1970, 1, 1, tzinfo=UTC)


def time_in(zone: tzinfo) -> Callable[[str], datetime]:
    """An argparse type: an ISO 8601 time (in `zone` when it has no offset) Temporal can hold."""

    def parse(text: str) -> datetime:
        try:
            moment = datetime.fromisoformat(text)
            moment = moment if moment.tzinfo else moment.replace(tzinfo=zone)
            in_utc = moment.astimezone(UTC)  # overflows at the calendar's ends
        except (ValueError, OverflowError):
            in_utc = None
        if in_utc is None or in_utc < EARLIEST_BACKFILL or in_utc.year > 9998:
            raise argparse.ArgumentTypeError(
                f"{shown(text)} is not an ISO 8601 time between 1970 and 9998, "
                "such as 2026-11-20T04:00"
            )
        return moment

    parse.__name__ = "time"
    return parse


def handle(client: Client, settings: Settings, job_id: str) -> ScheduleHandle:
    declared = {job.schedule_id for job in declared_schedules(settings)}
    if job_id not in declared and job_id.removeprefix(settings.schedule_id_prefix) not in declared:
        raise UsageError(
            f"unknown schedule {shown(job_id)}; declared: {', '.join(sorted(declared))}"
        )
    return client.get_schedule_handle(
        full_id(job_id.removeprefix(settings.schedule_id_prefix), settings)
    )


async def cmd_apply(client: Client, settings: Settings, args: argparse.Namespace) -> None:
    changes = await (apply if args.command == "apply" else plan)(
        client, settings, declared_schedules(settings)
    )
    for change in changes:
        verb = change.outcome if args.command == "apply" else f"would be {change.outcome}"
        if change.outcome == "unchanged":
            verb = "unchanged"
        print(f"{change.schedule_id:<32} {verb}")
        for detail in change.details:
            print(f"{'':<34}{detail}")


async def cmd_list(client: Client, settings: Settings, args: argparse.Namespace) -> None:
    print(f"{'SCHEDULE':<32} {'WHEN':<16} {'STATE':<8} {'NEXT RUN':<26} NOTE")
    for job in declared_schedules(settings):
        schedule_id = full_id(job.schedule_id, settings)
        when = job.cron or f"every {job.every}"
        description = await describe_or_none(client, schedule_id)
        if description is None:
            print(f"{schedule_id:<32} {when:<16} {'missing':<8} {'-':<26} run `apply`")
            continue
        state = description.schedule.state
        next_runs = description.info.next_action_times
        next_run = next_runs[0].astimezone(settings.timezone).isoformat() if next_runs else "-"
        status = "paused" if state.paused else "active"
        print(f"{schedule_id:<32} {when:<16} {status:<8} {next_run:<26} {state.note or ''}")


async def cmd_status(client: Client, settings: Settings, args: argparse.Namespace) -> None:
    only = None if args.id is None else handle(client, settings, args.id).id
    only_declared = None if only is None else only.removeprefix(settings.schedule_id_prefix)
    print(render(await schedule_statuses(client, settings, only_declared), settings.timezone))


async def cmd_describe(client: Client, settings: Settings, args: argparse.Namespace) -> None:
    description = await handle(client, settings, args.id).describe()
    schedule, info = description.schedule, description.info
    print(f"id:          {description.id}")
    print(f"action:      {schedule.action}")
    print(f"spec:        {schedule.spec}")
    print(f"policy:      {schedule.policy}")
    print(f"state:       {'paused' if schedule.state.paused else 'active'} ({schedule.state.note})")
    zone = settings.timezone
    next_runs = ", ".join(t.astimezone(zone).isoformat() for t in info.next_action_times[:5])
    print(f"next runs:   {next_runs}")
    for action in info.recent_actions[-5:]:
        scheduled, started = (
            action.scheduled_at.astimezone(zone),
            action.started_at.astimezone(zone),
        )
        print(f"recent run:  scheduled {scheduled.isoformat()} started {started.isoformat()}")
    running = [getattr(run, "workflow_id", "?") for run in info.running_actions]
    print(f"running:     {', '.join(running) or '-'}")


async def cmd_pause(client: Client, settings: Settings, args: argparse.Namespace) -> None:
    await handle(client, settings, args.id).pause(note=args.note)
    print(f"{args.id} paused: {args.note}")


async def cmd_unpause(client: Client, settings: Settings, args: argparse.Namespace) -> None:
    await handle(client, settings, args.id).unpause(note=args.note)
    print(f"{args.id} unpaused")


async def cmd_trigger(client: Client, settings: Settings, args: argparse.Namespace) -> None:
    await handle(client, settings, args.id).trigger()
    print(f"{args.id} triggered")


async def cmd_backfill(client: Client, settings: Settings, args: argparse.Namespace) -> None:
    start, end = args.start, args.end
    if end <= start:
        raise UsageError(f"--end {end.isoformat()} must be after --start {start.isoformat()}")
    # BUFFER_ALL: every missed tick runs, one after the other, in order.
    await handle(client, settings, args.id).backfill(
        ScheduleBackfill(start_at=start, end_at=end, overlap=ScheduleOverlapPolicy.BUFFER_ALL)
    )
    print(f"{args.id} backfilled from {start.isoformat()} to {end.isoformat()}")


async def cmd_delete(client: Client, settings: Settings, args: argparse.Namespace) -> None:
    await handle(client, settings, args.id).delete()
    print(f"{args.id} deleted (the next apply creates it again while it is declared)")


COMMANDS = {
    "apply": cmd_apply,
    "diff": cmd_apply,
    "list": cmd_list,
    "status": cmd_status,
    "describe": cmd_describe,
    "pause": cmd_pause,
    "unpause": cmd_unpause,
    "trigger": cmd_trigger,
    "backfill": cmd_backfill,
    "delete": cmd_delete,
}


def parser(settings: Settings) -> argparse.ArgumentParser:
    root = CommandParser(prog="learning-jobs schedules", description=__doc__.split("\n\n")[0])
    root.add_argument(
        "--wait-seconds",
        type=bounded_seconds(3600),
        default=0,
        help="wait up to this long for Temporal and its namespace (one-shots; default: no wait)",
    )
    commands = root.add_subparsers(dest="command", required=True)
    commands.add_parser("apply", help="create, update and prune schedules to match the code")
    commands.add_parser("diff", help="what apply would change")
    commands.add_parser("list", help="declared schedules with state and next run")
    status = commands.add_parser("status", help="last run, outcome, counts, pause, next run")
    status.add_argument("id", nargs="?")
    for name in ("describe", "trigger", "delete"):
        commands.add_parser(name).add_argument("id")
    pause = commands.add_parser("pause")
    pause.add_argument("id")
    pause.add_argument("--note", required=True, help="why; shown in the UI and kept by apply")
    unpause = commands.add_parser("unpause")
    unpause.add_argument("id")
    unpause.add_argument("--note", default="unpaused with schedules.py")
    backfill = commands.add_parser("backfill", help="run the ticks of a past time range")
    backfill.add_argument("id")
    backfill.add_argument("--start", required=True, type=time_in(settings.timezone))
    backfill.add_argument("--end", required=True, type=time_in(settings.timezone))
    return root


async def run(argv: Sequence[str], settings: Settings) -> None:
    args = parser(settings).parse_args(argv)
    client = await connect_when_ready(settings, args.wait_seconds)
    try:
        await COMMANDS[args.command](client, settings, args)
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND or not hasattr(args, "id"):
            raise
        raise UnavailableError(
            f"schedule {args.id!r} is declared but not in Temporal "
            f"(namespace {client.namespace!r}); run `schedules.py apply` first"
        ) from exc


@exits_without_teardown
@reports_operator_errors
def main(argv: Sequence[str] | None = None) -> None:
    settings = get_settings()
    asyncio.run(run(sys.argv[1:] if argv is None else argv, settings))


if __name__ == "__main__":
    main()
