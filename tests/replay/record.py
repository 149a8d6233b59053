"""`make record-histories`: real runs of every workflow type, exported for the replay corpus.

Starts a throwaway stack (embedded PostgreSQL, the `temporal` dev server, the production worker
wiring, a loopback OpenAI-compatible server and loopback web pages), drives every workflow type
of `workflows.registry.ALL_WORKFLOWS` through its happy path and the paths that shape a history
differently (activity retries after a 429, a failed session, a question set through
question-set-retry, the outbox relay across continue-as-new, a backfilled daily run, schedule
triggers), and writes each run's history with `temporal workflow show -o json` — the same JSON
the UI's export gives — into `tests/replay/histories/<UTC time>-<commit>/`.

Earlier folders stay: they are the workflows that may still be running in production when new
code is deployed (docs/deploying.md says when a folder may go).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import (
    Client,
    WorkflowContinuedAsNewError,
    WorkflowHandle,
)
from temporalio.service import RPCError

from activities.outbox_relay import relay_workflow_id
from activities.question_sets import request_and_start_question_set
from activities.registry import Dependencies
from learning_platform.commands.process_exit import exits_without_teardown
from learning_platform.core.database import create_engine, start_embedded_postgres
from learning_platform.core.metrics import free_loopback_port
from learning_platform.core.settings import PROJECT_ROOT, Settings
from learning_platform.dev.embedded_temporal import start_dev_server, temporal_cli_path
from learning_platform.jobs.ai_processing.contracts import session_workflow_id
from learning_platform.jobs.ai_processing.starters import (
    process_session_now,
    start_session_workflow,
)
from learning_platform.jobs.outbox_relay.contracts import OUTBOX_RELAY_WORKFLOW, OutboxRelayInput
from learning_platform.jobs.question_sets import queries as question_sets
from learning_platform.jobs.question_sets.contracts import generation_workflow_id
from learning_platform.migrations import upgrade
from learning_platform.scheduling.declarations import declared_schedules
from learning_platform.scheduling.sync import apply, full_id
from learning_platform.storage import build_storage
from tests.ai_processing_helpers import add_processing_session, summarising_responder
from tests.codec_keys import TEST_CODEC_KEYS, encrypting_converter
from tests.factories import add_session, add_user
from tests.fake_openai import FakeOpenAI, RecordedRequest, Reply
from tests.learning_helpers import pending_events, record, wait_for
from tests.pages_server import serving_pages
from tests.question_set_factories import STUDY_TEXT, add_question_set, add_source
from tests.schedule_helpers import backfill_and_wait, run_schedule_now
from worker import create_workers
from workflows.registry import ALL_WORKFLOWS

log = logging.getLogger("record-histories")
HISTORIES = Path(__file__).resolve().parent / "histories"
TASK_QUEUE = "replay-recording"
# Short relay runs: three drains of 2 s each, then continue-as-new.
RELAY_INPUT = OutboxRelayInput(drain_seconds=2, drains_per_run=3)
RECORD_TIMEOUT_SECONDS = 600


@dataclass
class Stack:
    client: Client
    settings: Settings
    engine: AsyncEngine
    llm: FakeOpenAI
    pages: str
    out: Path
    recorded: dict[str, str] = field(default_factory=dict)  # file stem -> workflow type

    async def keep(self, name: str, workflow_id: str, run_id: str) -> None:
        """Export the run's history as it stands now to `<name>.json`."""
        assert name not in self.recorded, f"two recordings named {name}"
        description = await self.client.get_workflow_handle(workflow_id, run_id=run_id).describe()
        self.recorded[name] = description.workflow_type
        with (self.out / f"{name}.json").open("wb") as file:
            exported = await asyncio.create_subprocess_exec(
                temporal_cli_path(), "workflow", "show", "--workflow-id", workflow_id,
                "--run-id", run_id, "--output", "json",
                "--address", self.settings.temporal_address or "",
                stdout=file,
            )  # fmt: skip
            if await exported.wait() != 0:
                raise RuntimeError(f"temporal workflow show {workflow_id} {run_id} failed")
        log.info("recorded", extra={"history": name, "workflow_id": workflow_id})

    async def keep_handle(self, name: str, handle: WorkflowHandle[Any, Any]) -> None:
        run_id = handle.run_id or (await handle.describe()).run_id
        await self.keep(name, handle.id, run_id)


async def run_schedule(stack: Stack, schedule_id: str) -> WorkflowHandle[Any, Any]:
    return await run_schedule_now(stack.client, stack.settings, schedule_id)


async def sessions(stack: Stack) -> None:
    """ProcessSession: completed after a 429 (the activity retried), failed with no readable
    page, failed on the mind map, skipped (not processing); AiProcessing starting one."""
    engine, client, queue = stack.engine, stack.client, stack.settings.task_queue
    user = await add_user(engine, "sessions@example.com")
    articles = [f"{stack.pages}/article/{n}" for n in range(3)]

    retried = await add_processing_session(engine, user, articles)
    stack.llm.script(Reply.error(429, retry_after=1))
    await process_session_now(client, engine, session_id=retried, task_queue=queue)
    await _keep_session(stack, "ProcessSession-completed-after-llm-429", retried)

    unreadable = await add_processing_session(engine, user, [f"{stack.pages}/missing"])
    await process_session_now(client, engine, session_id=unreadable, task_queue=queue)
    await _keep_session(stack, "ProcessSession-failed-no-readable-page", unreadable)

    stack.llm.responder = _refusing_mind_maps
    no_map = await add_processing_session(engine, user, articles[:1])
    await process_session_now(client, engine, session_id=no_map, task_queue=queue)
    await _keep_session(stack, "ProcessSession-failed-mind-map-llm-permanent-error", no_map)
    stack.llm.responder = summarising_responder

    swept = await add_processing_session(engine, user, articles[1:])
    sweep = await run_schedule(stack, "ai-processing")
    await stack.keep_handle("AiProcessing-started-one-session", sweep)
    await _keep_session(stack, "ProcessSession-started-by-sweeper", swept)

    # Completed by now: a new run of its workflow finds it not processing and ends at once.
    await start_session_workflow(
        client, session_id=swept, user_id=user, page_count=2, task_queue=queue
    )
    await _keep_session(stack, "ProcessSession-skipped-not-processing", swept)


def _refusing_mind_maps(request: RecordedRequest) -> Reply:
    if request.schema_name == "mind_map":
        return Reply.error(400, message="the model refused the mind map")
    return summarising_responder(request)


async def _keep_session(stack: Stack, name: str, session_id: int) -> None:
    """The latest run of the session's workflow, once it has ended."""
    latest = stack.client.get_workflow_handle(session_workflow_id(session_id))
    await latest.result()
    await stack.keep(name, latest.id, (await latest.describe()).run_id)


async def browsing_jobs(stack: Stack) -> None:
    user = await add_user(stack.engine, "stale@example.com")
    for _ in range(3):
        await add_session(stack.engine, user, "recording", datetime.now(UTC) - timedelta(days=2))
    await stack.keep_handle(
        "CleanupStaleSessions-failed-three", await run_schedule(stack, "cleanup-stale-sessions")
    )
    await stack.keep_handle("UpdateMetrics-triggered", await run_schedule(stack, "update-metrics"))


async def retention_job(stack: Stack) -> None:
    user = await add_user(stack.engine, "retention@example.com")
    async with stack.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO notifications (user_id, kind, payload, dedupe_key, created_at) "
                "VALUES (:u, 'old', '{}', 'retention-old', now() - interval '400 days')"
            ),
            {"u": user},
        )
    await stack.keep_handle("Retention-deleted-one", await run_schedule(stack, "retention"))


async def question_set_jobs(stack: Stack) -> None:
    """QuestionGeneration: started by the app after a 429, through question-set-retry after a
    failed attempt, failed on a bad source; the three Pullit jobs."""
    engine, settings = stack.engine, stack.settings
    user = await add_user(engine, "questions@example.com")
    source = await _stored_source(stack, user, STUDY_TEXT.encode())

    stack.llm.script(Reply.error(429, retry_after=1))
    started = await request_and_start_question_set(
        engine, stack.client, settings, user_id=user, source_id=source, title="Quiz"
    )
    await started.result()
    await stack.keep_handle("QuestionGeneration-completed-after-llm-429", started)

    stack.llm.script(Reply.error(400, message="context length exceeded"))
    async with engine.begin() as conn:
        requested = await question_sets.request_question_set(
            conn, user_id=user, source_id=source, title="Retried quiz"
        )
    set_id = requested.question_set_id
    first = await _generation(stack, set_id, attempt=1)
    await stack.keep_handle("QuestionGeneration-failed-llm-permanent-error", first)
    await stack.keep_handle(
        "QuestionSetRetry-retried-one", await run_schedule(stack, "question-set-retry")
    )
    second = await _generation(stack, set_id, attempt=2)
    await stack.keep_handle("QuestionGeneration-completed-on-retry", second)

    empty = await _stored_source(stack, user, b"")
    bad = await request_and_start_question_set(
        engine, stack.client, settings, user_id=user, source_id=empty, title="Empty"
    )
    await bad.result()
    await stack.keep_handle("QuestionGeneration-failed-bad-source", bad)

    await add_question_set(
        engine, user, source, requested_at=datetime.now(UTC) - timedelta(hours=2)
    )
    await stack.keep_handle(
        "QuestionSetCleanup-failed-one", await run_schedule(stack, "question-set-cleanup")
    )
    await _stored_source(stack, user, b"old notes", datetime.now(UTC) - timedelta(hours=1))
    await stack.keep_handle(
        "SourceCleanup-deleted-one", await run_schedule(stack, "source-cleanup")
    )


async def _stored_source(
    stack: Stack, user: int, body: bytes, deletion_requested_at: datetime | None = None
) -> int:
    key = f"users/{user}/{uuid.uuid4().hex}.txt"
    await build_storage(stack.settings).put(key, body, "text/plain")
    return await add_source(stack.engine, user, key, deletion_requested_at=deletion_requested_at)


async def _generation(stack: Stack, set_id: int, attempt: int) -> WorkflowHandle[Any, Any]:
    """The attempt's workflow, which the outbox relay starts, once it has ended."""
    workflow_id = generation_workflow_id(set_id, attempt, stack.settings.schedule_id_prefix)
    handle = stack.client.get_workflow_handle(workflow_id)

    async def started() -> bool:
        try:
            await handle.describe()
        except RPCError:
            return False
        return True

    await wait_for(started, within=60)
    await handle.result()
    return stack.client.get_workflow_handle(workflow_id, run_id=(await handle.describe()).run_id)


async def learn_stats_jobs(stack: Stack) -> None:
    """LearnStatsDaily through a schedule backfill (a past tick run late), LearnStatsWeekly."""
    engine = stack.engine
    now = datetime.now(UTC)
    for n in range(3):
        user = await add_user(engine, f"learner{n}@example.com")
        await record(engine, user, now - timedelta(days=3 + n))

    async def delivered() -> bool:
        return await pending_events(engine) == 0

    await wait_for(delivered, within=60)
    tick = datetime.now(stack.settings.timezone).replace(hour=0, minute=0, second=0, microsecond=0)
    tick -= timedelta(days=1)
    await stack.keep_handle(
        "LearnStatsDaily-backfilled-tick",
        await backfill_and_wait(stack.client, stack.settings, "learn-stats-daily", tick),
    )
    await stack.keep_handle(
        "LearnStatsWeekly-triggered", await run_schedule(stack, "learn-stats-weekly")
    )


async def outbox_relay(stack: Stack, first_run: str) -> None:
    """The relay's first two runs (each ends in continue-as-new), its current run while it is
    open, and the watchdog that found it running."""
    workflow_id = relay_workflow_id(stack.settings)
    await stack.keep_handle(
        "EnsureOutboxRelay-relay-already-running", await run_schedule(stack, "outbox-relay")
    )
    second = await _continued_as(stack.client.get_workflow_handle(workflow_id, run_id=first_run))
    await _continued_as(stack.client.get_workflow_handle(workflow_id, run_id=second))
    for n, run_id in enumerate((first_run, second), start=1):
        await stack.keep(f"OutboxRelay-continued-as-new-{n}", workflow_id, run_id)
    # Taken while it runs: a worker of a new build replays exactly such a partial history.
    current = (await stack.client.get_workflow_handle(workflow_id).describe()).run_id
    await stack.keep("OutboxRelay-open", workflow_id, current)


async def retired_relay(stack: Stack) -> None:
    """A relay of a partition the count does not include (1 of 1): its drain reports `retired`
    and the workflow completes (the `retired-partition-ends-relay` patch)."""
    handle = await stack.client.start_workflow(
        OUTBOX_RELAY_WORKFLOW,
        replace(RELAY_INPUT, partition=1),
        id=relay_workflow_id(stack.settings, 1),
        task_queue=stack.settings.task_queue,
    )
    await handle.result()
    await stack.keep_handle("OutboxRelay-retired-partition", handle)


async def _continued_as(handle: WorkflowHandle[Any, Any]) -> str:
    try:
        await handle.result(follow_runs=False)
    except WorkflowContinuedAsNewError as continued:
        return continued.new_execution_run_id
    raise AssertionError(f"{handle.id} ended instead of continuing as new")


async def record_all(stack: Stack) -> None:
    await _schedules_paused(stack)
    relay = await stack.client.start_workflow(
        OUTBOX_RELAY_WORKFLOW,
        RELAY_INPUT,
        id=relay_workflow_id(stack.settings),
        task_queue=stack.settings.task_queue,
    )
    try:
        await browsing_jobs(stack)
        await sessions(stack)
        await question_set_jobs(stack)
        await learn_stats_jobs(stack)
        await retention_job(stack)
        await outbox_relay(stack, relay.first_execution_run_id or "")
        await retired_relay(stack)
    finally:
        await stack.client.get_workflow_handle(relay.id).terminate("recording finished")
    missing = registered_workflow_types() - set(stack.recorded.values())
    if missing:
        raise RuntimeError(f"no history recorded for {sorted(missing)}: add a scenario")


def registered_workflow_types() -> set[str]:
    """The workflow type names the worker registers (`@workflow.defn(name=...)`)."""
    return {cls.__temporal_workflow_definition.name for cls in ALL_WORKFLOWS}  # type: ignore[attr-defined]


async def _schedules_paused(stack: Stack) -> None:
    """The declared schedules, paused: a run happens only when a scenario triggers it."""
    declared = declared_schedules(stack.settings)
    await apply(stack.client, stack.settings, declared)
    for job in declared:
        handle = stack.client.get_schedule_handle(full_id(job.schedule_id, stack.settings))
        await handle.pause(note="recording histories: runs only when triggered")


def recording_folder() -> str:
    """`<UTC time>-<commit>` (sorts by time), `-dirty` when the workflows or their contracts
    have uncommitted changes."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=PROJECT_ROOT, check=True, capture_output=True, text=True
        ).stdout.strip()

    commit = git("rev-parse", "--short=10", "HEAD")
    dirty = "-dirty" if git("status", "--porcelain", "--", "workflows", "contracts") else ""
    return f"{datetime.now(UTC):%Y-%m-%dT%H%MZ}-{commit}{dirty}"


def record_into(out: Path) -> dict[str, str]:
    with tempfile.TemporaryDirectory(prefix="record-") as scratch:
        data_dir = Path(scratch)
        database_url = start_embedded_postgres(data_dir, at_exit="delete")
        upgrade(database_url)  # outside the event loop: the migrations run their own
        port = free_loopback_port()
        server = start_dev_server(data_dir, port=port, ui_port=free_loopback_port())
        try:
            return asyncio.run(_record_on(out, data_dir, database_url, f"127.0.0.1:{port}"))
        finally:
            server.terminate()
            server.wait(timeout=30)


async def _record_on(out: Path, data_dir: Path, database_url: str, address: str) -> dict[str, str]:
    # Encrypted with the tests' key, as production payloads are (the corpus replays with it).
    client = await Client.connect(address, data_converter=encrypting_converter())
    engine = create_engine(database_url, pool_size=5)
    with FakeOpenAI.running() as llm, serving_pages() as pages:
        llm.responder = summarising_responder
        settings = Settings(
            database_url=database_url,
            temporal_address=address,
            task_queue=TASK_QUEUE,
            data_dir=data_dir,
            metrics_port=0,
            worker_shutdown_grace_seconds=2,
            crawler_allowed_hosts=["127.0.0.1"],
            outbox_poll_seconds=0.2,
            payload_codec_keys=TEST_CODEC_KEYS,
            **llm.settings_update(),
        )
        stack = Stack(client, settings, engine, llm, pages, out)
        main, ai = create_workers(client, Dependencies(settings, engine, client))
        try:
            async with ai, main, asyncio.timeout(RECORD_TIMEOUT_SECONDS):
                await record_all(stack)
        finally:
            await engine.dispose()
    return stack.recorded


@exits_without_teardown
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--out", type=Path, help="default: tests/replay/histories/<UTC time>-<commit>"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")
    out: Path = args.out or HISTORIES / recording_folder()
    out.mkdir(parents=True, exist_ok=True)
    recorded = record_into(out)
    print(f"{len(recorded)} histories of {len(set(recorded.values()))} workflow types in {out}")


if __name__ == "__main__":
    main()
