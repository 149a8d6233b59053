"""Scenario 8: a rolling deploy under load. Two worker processes of build 1 relay learning events
offered at DEPLOY_LOAD_RATE (2,000/s) and process browsing sessions (LLM answers take 1 s);
two processes of build 2 (tests/faults/next_build_workflows.py: an incompatible change to
ProcessSession, a patched one to OutboxRelay) start, build 2 is made current with the CLI, and
the build-1 processes are stopped one by one with SIGTERM. Asserts nothing lost or doubled,
build-1 sessions finish on build 1, new runs start on build 2, the relay moves to build 2 and
no history fails to replay; measures the age of the oldest undelivered event around the switch.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle, WorkflowHistory
from temporalio.common import VersioningBehavior
from temporalio.worker import Replayer
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from activities.outbox_relay import relay_workflow_id
from learning_platform.core.settings import Settings
from learning_platform.jobs.ai_processing.contracts import session_workflow_id
from learning_platform.jobs.ai_processing.starters import process_session_now
from learning_platform.scheduling.declarations import declared_schedules
from learning_platform.scheduling.sync import apply
from tests.ai_processing_helpers import add_processing_session, summarising_responder
from tests.codec_keys import encrypting_converter
from tests.fake_openai import FakeOpenAI, RecordedRequest, Reply
from tests.faults.next_build_workflows import NEXT_BUILD_WORKFLOWS, NEXT_RELAY_REVISION
from tests.faults.report import FaultReport
from tests.faults.test_s7_outbox_load import _OFFER
from tests.faults.world import execute, scalar
from tests.learning_helpers import wait_for
from tests.pages_server import serving_pages
from tests.schedule_helpers import run_schedule_now
from tests.test_replay import CORPUS, load, workflow_type_of
from tests.worker_process import WorkerProcess, running_worker
from tests.worker_versions import landed_on, set_current_version
from worker import WORKFLOW_SANDBOX_RESTRICTIONS

pytestmark = [pytest.mark.faults, pytest.mark.timeout(300)]

RATE = 2000
TICK = 0.1
USERS = 500
SESSIONS_PER_BUILD = 8
OLD, NEW = "build-1", "build-2"


def slow_llm(request: RecordedRequest) -> Reply:
    reply = summarising_responder(request)
    reply.delay = 1.0
    return reply


@dataclass
class Offering:
    """Learning events offered at RATE until stopped, and the oldest undelivered event's age
    sampled meanwhile (an upper bound of the relay's delivery latency at that moment)."""

    engine: AsyncEngine
    offered: int = 0
    seconds: float = 0.0
    ages: list[tuple[float, float]] = field(default_factory=list)  # (monotonic time, age s)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def offer(self) -> None:
        per_tick, started = int(RATE * TICK), time.monotonic()
        while not self.stop.is_set():
            await execute(self.engine, _OFFER, users=USERS, n=per_tick)
            self.offered += per_tick
            behind = self.offered / RATE - (time.monotonic() - started)
            if behind > 0:
                await asyncio.sleep(behind)
        self.seconds = time.monotonic() - started

    async def sample(self) -> None:
        while True:
            age = await scalar(
                self.engine,
                "SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0) "
                "FROM outbox_events",
            )
            self.ages.append((time.monotonic(), float(age)))
            await asyncio.sleep(0.25)

    def worst_age(self, start: float, end: float) -> float:
        return max((age for at, age in self.ages if start <= at <= end), default=0.0)


@contextlib.asynccontextmanager
async def offering(engine: AsyncEngine) -> AsyncIterator[Offering]:
    load = Offering(engine)
    tasks = [asyncio.create_task(load.offer()), asyncio.create_task(load.sample())]
    try:
        yield load
    finally:
        load.stop.set()
        await tasks[0]
        tasks[1].cancel()


def start_build(
    stack: ExitStack, settings: Settings, env: dict[str, str], build: str, module: str | None
) -> list[WorkerProcess]:
    """Two worker processes of `build`, stopped (if still running) when `stack` closes.
    Blocks until both have logged `worker started`."""
    return [
        stack.enter_context(
            running_worker(
                settings, module=module, startup_timeout=120, WORKER_BUILD_ID=build, **env
            )
        )
        for _ in range(2)
    ]


async def stop_gracefully(worker: WorkerProcess) -> int:
    """SIGTERM, and its exit status once it has stopped (in a thread: the load goes on)."""
    worker.process.send_signal(signal.SIGTERM)
    return await asyncio.to_thread(worker.process.wait, 60)


async def start_sessions(
    client: Client, engine: AsyncEngine, settings: Settings, user: int, base: str
) -> list[int]:
    ids = []
    for n in range(SESSIONS_PER_BUILD):
        urls = [f"{base}/article/{n}", f"{base}/article/{n + 1}"]
        session = await add_processing_session(engine, user, urls)
        await process_session_now(
            client, engine, session_id=session, task_queue=settings.task_queue
        )
        ids.append(session)
    return ids


async def history_events(handle: WorkflowHandle[Any, Any]) -> list[str]:
    history = await handle.fetch_history()
    return [EventType.Name(event.event_type) for event in history.events]


async def replay_failures(workflow_type: str) -> tuple[int, int]:
    """(histories, failures) of the corpus's `workflow_type` replayed on build 2's code."""
    paths = [path for path in CORPUS if workflow_type_of(path) == workflow_type]
    replayer = Replayer(
        workflows=NEXT_BUILD_WORKFLOWS,
        workflow_runner=SandboxedWorkflowRunner(restrictions=WORKFLOW_SANDBOX_RESTRICTIONS),
        # Recordings made with the payload codec on decrypt with the tests' key.
        data_converter=encrypting_converter(),
    )

    async def each() -> AsyncIterator[WorkflowHistory]:
        for path in paths:
            yield load(path)

    results = await replayer.replay_workflows(each(), raise_on_replay_failure=False)
    return len(paths), len(results.replay_failures)


async def test_s8_build_2_breaks_session_replay_and_keeps_relay_replay() -> None:
    """What makes scenario 8 a test of pinning: build 2's ProcessSession cannot replay a
    build-1 history, while its patched OutboxRelay can."""
    sessions, session_failures = await replay_failures("ProcessSession")
    relays, relay_failures = await replay_failures("OutboxRelay")
    assert sessions and session_failures == sessions
    assert relays and relay_failures == 0


async def processing_left(engine: AsyncEngine, sessions: list[int]) -> int:
    return int(
        await scalar(
            engine,
            "SELECT count(*) FROM sessions WHERE id = ANY(:ids) AND status = 'processing'",
            ids=sessions,
        )
    )


async def test_s8_rolling_deploy_under_load(
    engine: AsyncEngine, client: Client, settings: Settings, fault_report: FaultReport
) -> None:
    deployment = f"deploy-{settings.task_queue}"
    await execute(
        engine,
        "INSERT INTO users (email, display_name) SELECT 'u' || n || '@x', 'u' "
        "FROM generate_series(1, :n) n",
        n=USERS,
    )
    versioned = settings.model_copy(
        update={"worker_deployment_name": deployment, "worker_build_id": OLD}
    )
    await apply(client, versioned, declared_schedules(versioned))
    relay = client.get_workflow_handle(relay_workflow_id(versioned))
    with FakeOpenAI.running() as llm, serving_pages() as pages, ExitStack() as stack:
        llm.responder = slow_llm
        env = {
            "WORKER_DEPLOYMENT_NAME": deployment,
            "OUTBOX_DRAIN_MINUTES": "0.1",
            "OPENAI_API_KEY": "test-key",
            "OPENAI_BASE_URL": llm.base_url,
            "OPENAI_MODEL": llm.model,
            "CRAWLER_ALLOWED_HOSTS": '["127.0.0.1"]',
        }
        old_workers = start_build(stack, settings, env, OLD, None)
        await set_current_version(client, deployment, OLD)
        await run_schedule_now(client, versioned, "outbox-relay")
        old_relay_run = (await relay.describe()).run_id
        old_cleanup = await run_schedule_now(client, versioned, "cleanup-stale-sessions")
        owner = int(await scalar(engine, "SELECT min(id) FROM users"))
        async with offering(engine) as load:
            old_sessions = await start_sessions(client, engine, settings, owner, pages)
            new_build_starting = time.monotonic()
            new_workers = await asyncio.to_thread(
                start_build, stack, settings, env, NEW, "tests.faults.next_build_worker"
            )
            switch_started = time.monotonic()
            await set_current_version(client, deployment, NEW)
            switched = time.monotonic()
            new_sessions = await start_sessions(client, engine, settings, owner, pages)
            new_cleanup = await run_schedule_now(client, versioned, "cleanup-stale-sessions")
            first_exit = await stop_gracefully(old_workers[0])

            async def old_sessions_done() -> bool:
                return await processing_left(engine, old_sessions) == 0

            async def relay_on_new_build() -> bool:
                return (await landed_on(relay))[0] == NEW

            await wait_for(old_sessions_done, within=90, interval=0.2)
            await wait_for(relay_on_new_build, within=60, interval=0.2)
            relay_moved = time.monotonic()
            second_exit = await stop_gracefully(old_workers[1])
            await asyncio.sleep(2)  # the load keeps flowing, on build 2 alone
        after_switch = time.monotonic()
        fault_report.injected(
            f"{RATE}/s learning events offered and {SESSIONS_PER_BUILD} sessions processing "
            "on build 1 (2 worker processes); 2 processes of build 2 started (incompatible "
            "ProcessSession change, patched OutboxRelay); build 2 made current with `temporal "
            "worker deployment set-current-version`; build-1 processes stopped one by one "
            "with SIGTERM"
        )

        async def drained() -> bool:
            return await scalar(engine, "SELECT count(*) FROM outbox_events") == 0

        async def new_sessions_done() -> bool:
            return await processing_left(engine, new_sessions) == 0

        await wait_for(drained, within=90, interval=0.2)
        await wait_for(new_sessions_done, within=90, interval=0.2)
        assert all(worker.process.poll() is None for worker in new_workers)

    offered_rate = load.offered / load.seconds
    before = load.worst_age(0, new_build_starting)
    starting = load.worst_age(new_build_starting, switch_started)
    during = load.worst_age(switch_started, relay_moved)
    after = load.worst_age(relay_moved, after_switch)
    fault_report.measured(
        f"offered {offered_rate:,.0f} events/s ({load.offered:,} in {load.seconds:.1f} s); "
        f"build 2's processes took {switch_started - new_build_starting:.1f} s to start; "
        f"set-current-version {switched - switch_started:.1f} s; relay on build 2 "
        f"{relay_moved - switched:.1f} s after the switch; oldest undelivered event at most "
        f"{before:.2f} s old on build 1 alone, {starting:.2f} s while build 2 started, "
        f"{during:.2f} s from the switch until the relay moved, {after:.2f} s after"
    )
    assert first_exit == 0 and second_exit == 0, "a build-1 worker did not stop cleanly"

    totals = await scalar(engine, "SELECT coalesce(sum(total_solved), 0) FROM learn_stats")
    applied = await scalar(engine, "SELECT count(*) FROM learning_records WHERE stats_applied")
    assert totals == applied == load.offered
    assert await scalar(engine, "SELECT count(*) FROM outbox_dead_letters") == 0
    fault_report.verified(
        f"all {load.offered:,} events counted exactly once across the switch (sum of totals = "
        "applied records = offered), no dead letters"
    )

    everyone = old_sessions + new_sessions
    assert await scalar(
        engine, "SELECT count(*) FROM sessions WHERE id = ANY(:ids) AND status = 'completed'",
        ids=everyone,
    ) == len(everyone)  # fmt: skip
    assert await scalar(
        engine, "SELECT count(*) FROM mind_maps WHERE session_id = ANY(:ids)", ids=everyone
    ) == len(everyone)  # fmt: skip
    for ids, build in ((old_sessions, OLD), (new_sessions, NEW)):
        for session in ids:
            handle = client.get_workflow_handle(session_workflow_id(session))
            assert await landed_on(handle) == (build, VersioningBehavior.PINNED), session
            events = await history_events(handle)
            assert not any("WORKFLOW_TASK_FAILED" in e for e in events), session
            assert any("TIMER_STARTED" in e for e in events) == (build == NEW), session
    assert (await landed_on(old_cleanup))[0] == OLD
    assert (await landed_on(new_cleanup))[0] == NEW
    fault_report.verified(
        f"{len(everyone)} sessions completed with one mind map each; the {SESSIONS_PER_BUILD} "
        "started before the switch finished pinned to build 1 (old code, no timer) after one "
        "of its two processes had stopped; those after it ran build 2's code; a schedule tick "
        "before / after the switch ran on build 1 / 2; no workflow task failed"
    )

    old_relay = await client.get_workflow_handle(relay.id, run_id=old_relay_run).describe()
    assert old_relay.status == WorkflowExecutionStatus.CONTINUED_AS_NEW
    relay_now = await relay.describe()
    assert relay_now.run_id != old_relay_run
    assert (await relay_now.memo()).get("relay_revision") == NEXT_RELAY_REVISION
    fault_report.verified(
        "the relay continued as new from build 1 onto build 2 (its patched code recorded its "
        "revision in the memo) before the last build-1 process stopped"
    )
    # Last, so that a machine too busy to offer the load still checks everything above.
    assert offered_rate >= RATE * 0.9, f"the load reached only {offered_rate:,.0f}/s"
