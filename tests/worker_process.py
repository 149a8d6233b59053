"""Real `worker.py` processes for tests that need several workers or must kill one."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from learning_platform.core.database import resolve_database_url
from learning_platform.core.metrics import free_loopback_port
from learning_platform.core.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class WorkerProcess:
    process: subprocess.Popen[str]
    metrics_port: int
    lines: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)
    seen: list[dict[str, Any]] = field(default_factory=list)

    def wait_for_log(self, message: str, timeout: float = 30, **fields: Any) -> dict[str, Any]:
        """Block until the worker logs `message` (with `fields`); the JSON log is the event."""
        found = self.find_log(message, **fields)
        while found is None:
            try:
                entry = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise TimeoutError(
                    f"worker did not log {message!r} {fields} in {timeout}s"
                ) from None
            self.seen.append(entry)
            found = entry if _matches(entry, message, fields) else None
        return found

    def find_log(self, message: str, **fields: Any) -> dict[str, Any] | None:
        """A matching entry among what the worker has logged so far, without waiting."""
        while not self.lines.empty():
            self.seen.append(self.lines.get_nowait())
        return next((e for e in self.seen if _matches(e, message, fields)), None)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


def _matches(entry: dict[str, Any], message: str, fields: dict[str, Any]) -> bool:
    return entry.get("msg") == message and all(entry.get(k) == v for k, v in fields.items())


def _pump(stream: Any, lines: queue.Queue[dict[str, Any]]) -> None:
    for line in stream:
        try:
            lines.put(json.loads(line))
        except json.JSONDecodeError:
            lines.put({"msg": line.rstrip()})


def worker_env(settings: Settings, **overrides: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": resolve_database_url(settings),
        "TEMPORAL_ADDRESS": settings.temporal_address or "",
        "TEMPORAL_NAMESPACE": settings.temporal_namespace,
        "TASK_QUEUE": settings.task_queue,
        "SCHEDULE_ID_PREFIX": settings.schedule_id_prefix,
        "DATA_DIR": str(settings.data_dir),
        "WORKER_SHUTDOWN_GRACE_SECONDS": str(settings.worker_shutdown_grace_seconds),
    }
    if settings.payload_codec_keys is not None:
        env["PAYLOAD_CODEC_KEYS"] = settings.payload_codec_keys.get_secret_value()
    env.update(overrides)
    return env


@contextmanager
def running_worker(
    settings: Settings,
    *,
    module: str | None = None,
    startup_timeout: float = 30,
    **env_overrides: str,
) -> Iterator[WorkerProcess]:
    """Start `python worker.py` (or `python -m MODULE`) for the test's database, Temporal and
    task queue."""
    port = free_loopback_port()
    entry = ["-m", module] if module else [str(PROJECT_ROOT / "worker.py")]
    process = subprocess.Popen(
        [sys.executable, *entry],
        cwd=PROJECT_ROOT,
        env=worker_env(settings, METRICS_PORT=str(port), **env_overrides),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    worker = WorkerProcess(process, port)
    assert process.stderr is not None
    threading.Thread(target=_pump, args=(process.stderr, worker.lines), daemon=True).start()
    try:
        worker.wait_for_log("worker started", timeout=startup_timeout)
        yield worker
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
