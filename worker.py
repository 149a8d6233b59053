"""Entry point: the Temporal workers of one process, plus /metrics.

One worker polls the main task queue (every workflow, the database activities); one polls
the AI queue (TASK_QUEUE + "-ai"), running at most AI_MAX_CONCURRENCY LLM activities at once.

    learning-jobs worker                      # or, in a checkout: python worker.py
    learning-jobs worker --wait-seconds 180   # compose: wait for the stack's setup first

At start it checks that it can work: settings valid, PostgreSQL reachable, Temporal reachable,
the namespace there with the search attributes the workflows set. If not, it logs one line
saying what to fix and exits (2: fix a setting or the namespace; 1: a server is unreachable).
With --wait-seconds it first waits, at most that long in all, for what another process may
still be setting up (the database and Temporal coming up, the namespace and its search
attributes being registered); a search attribute of the wrong type ends it at once.

SIGTERM/SIGINT stop polling and give running activities WORKER_SHUTDOWN_GRACE_SECONDS to finish.
With WORKER_BUILD_ID set, both are versioned workers of WORKER_DEPLOYMENT_NAME (docs/deploying.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Coroutine, Sequence
from datetime import timedelta
from typing import Any

from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.runtime import Runtime
from temporalio.worker import Worker, WorkerDeploymentConfig
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.registry import AiQueue, Dependencies, build_activities, build_ai_activities
from learning_platform.commands.arguments import CommandParser, bounded_seconds
from learning_platform.commands.process_exit import exits_without_teardown, reports_operator_errors
from learning_platform.core.database import check_database, create_engine, resolve_database_url
from learning_platform.core.errors import UnavailableError, UsageError
from learning_platform.core.gauges import read_gauges
from learning_platform.core.logs import configure_logging
from learning_platform.core.metrics import (
    JobGaugeCollector,
    SdkMetricsCollector,
    sdk_runtime_with_prometheus,
    serve_metrics,
)
from learning_platform.core.settings import Settings, get_settings
from learning_platform.core.tracing import configure_tracing
from learning_platform.core.waiting import retried
from learning_platform.jobs.ai_processing.contracts import ai_task_queue
from learning_platform.jobs.outbox_relay.metrics import read_backlog
from learning_platform.temporal.connection import connect_when_ready
from learning_platform.temporal.worker_checks import (
    SearchAttributeMissingError,
    check_search_attributes,
)
from workflows.registry import ALL_WORKFLOWS

log = logging.getLogger("worker")

# The families' `contracts` (plain data and activity interfaces, the only modules workflows
# import) are shared with the sandbox instead of re-imported for every workflow run, which cost
# ~100 ms of CPU per run (bench/ai_processing).
WORKFLOW_SANDBOX_RESTRICTIONS = SandboxRestrictions.default.with_passthrough_modules(
    "learning_platform.jobs"
)


def worker_identity() -> str:
    return f"{os.getpid()}@{socket.gethostname()}"


def deployment_config(settings: Settings) -> WorkerDeploymentConfig | None:
    """Worker Versioning with WORKER_BUILD_ID set; unversioned workers without one.

    Every run is pinned to the build that started it: it never replays on other code, so a
    deploy needs no drain. The outbox relay, which never ends, moves to the current build at
    its next continue-as-new. (A behaviour declared in `@workflow.defn` would be refused by
    the server from unversioned workers — temporalio 1.35 sends it regardless — so it is the
    worker's default here, which also covers workflows added later.)"""
    if settings.worker_build_id is None:
        return None
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(settings.worker_deployment_name, settings.worker_build_id),
        use_worker_versioning=True,
        default_versioning_behavior=VersioningBehavior.PINNED,
    )


def create_worker(client: Client, deps: Dependencies, task_queue: str | None = None) -> Worker:
    """The worker for the main task queue; tests build theirs through this too."""
    return Worker(
        client,
        task_queue=task_queue or deps.settings.task_queue,
        workflows=ALL_WORKFLOWS,
        activities=build_activities(deps),
        workflow_runner=SandboxedWorkflowRunner(restrictions=WORKFLOW_SANDBOX_RESTRICTIONS),
        identity=worker_identity(),
        graceful_shutdown_timeout=timedelta(seconds=deps.settings.worker_shutdown_grace_seconds),
        deployment_config=deployment_config(deps.settings),
    )


def create_ai_worker(client: Client, deps: Dependencies, queue: AiQueue, task_queue: str) -> Worker:
    """The AI queue's worker (at most AI_MAX_CONCURRENCY activities at once); it closes the
    queue's connection pools when it stops."""
    return Worker(
        client,
        task_queue=ai_task_queue(task_queue),
        activities=queue.activities,
        plugins=[queue.plugin],
        max_concurrent_activities=deps.settings.ai_max_concurrency,
        identity=worker_identity(),
        graceful_shutdown_timeout=timedelta(seconds=deps.settings.worker_shutdown_grace_seconds),
        deployment_config=deployment_config(deps.settings),
    )


def create_workers(
    client: Client, deps: Dependencies, task_queue: str | None = None
) -> list[Worker]:
    """The main queue's worker first, then the AI queue's (concurrency-capped) worker."""
    main = create_worker(client, deps, task_queue)
    return [main, create_ai_worker(client, deps, build_ai_activities(deps), main.task_queue)]


def _version_name(settings: Settings) -> str:
    config = deployment_config(settings)
    return "unversioned" if config is None else config.version.to_canonical_string()


def serve_worker_metrics(port: int) -> None:
    try:
        serve_metrics(port)
    except OSError as exc:
        raise UsageError(
            f"METRICS_PORT {port} cannot be served ({exc.strerror}); "
            "set METRICS_PORT to a free port, or 0 for none"
        ) from exc


async def ready_client(
    settings: Settings, engine: AsyncEngine, runtime: Runtime, wait_seconds: float
) -> Client:
    """The start-up checks, each retried while waiting can fix it, all within `wait_seconds`."""
    started = time.monotonic()
    await retried(
        lambda: check_database(engine),
        retry_on=(UnavailableError,),
        wait_seconds=wait_seconds,
        since=started,
        what="the database",
    )
    client = await connect_when_ready(settings, wait_seconds, runtime=runtime, since=started)
    await retried(
        lambda: check_search_attributes(client),
        retry_on=(SearchAttributeMissingError,),
        wait_seconds=wait_seconds,
        since=started,
        what=f"namespace {client.namespace!r} with its search attributes",
    )
    return client


async def run(settings: Settings, stop: asyncio.Event, wait_seconds: float = 0) -> None:
    engine = create_engine(resolve_database_url(settings), settings.database_pool_size)
    runtime, sdk_metrics_url = sdk_runtime_with_prometheus()
    # SIGTERM while waiting ends the wait: a stack stopped during its start stops at once.
    checks = asyncio.ensure_future(ready_client(settings, engine, runtime, wait_seconds))
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({checks, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not checks.done():
        checks.cancel()
        await engine.dispose()
        log.info("worker stopped before it started")
        return
    client = checks.result()
    REGISTRY.register(SdkMetricsCollector(sdk_metrics_url))
    REGISTRY.register(JobGaugeCollector(lambda: read_gauges(engine), asyncio.get_running_loop()))
    REGISTRY.register(JobGaugeCollector(lambda: read_backlog(engine), asyncio.get_running_loop()))
    serve_worker_metrics(settings.metrics_port)

    deps = Dependencies(settings=settings, engine=engine, temporal=client)
    workers = create_workers(client, deps)
    log.info(
        "worker started",
        extra={
            "task_queues": [worker.task_queue for worker in workers],
            "identity": workers[0].config()["identity"],
            "deployment_version": _version_name(deps.settings),
            "metrics": f"http://localhost:{settings.metrics_port}/metrics",
        },
    )
    try:
        async with contextlib.AsyncExitStack() as running:
            for worker in workers:
                await running.enter_async_context(worker)
            await stop.wait()
            log.info("shutting down: waiting for running activities")
    finally:
        await engine.dispose()
    log.info("worker stopped")


@exits_without_teardown
@reports_operator_errors
def main(argv: Sequence[str] | None = None) -> None:
    parser = CommandParser(prog="learning-jobs worker", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--wait-seconds",
        type=bounded_seconds(3600),
        default=0,
        help="wait up to this long for the database, Temporal, the namespace and its search "
        "attributes (compose; default: no wait)",
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level)
    configure_tracing(settings)

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run(settings, stop, args.wait_seconds)

    run_event_loop(_main())


def run_event_loop(main: Coroutine[Any, Any, None]) -> None:
    """On uvloop where it is installed (not on Windows): the AI worker spends 7 % less CPU
    per session than on asyncio's loop (bench/ai_processing, docs/benchmarks.md). The
    workflows run on the SDK's own deterministic loop either way."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


if __name__ == "__main__":
    main()
