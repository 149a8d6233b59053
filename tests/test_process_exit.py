"""Entry points end without interpreter teardown but with the status, output and atexit work
a normal exit would have (learning_platform.commands.process_exit)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import learning_platform.commands.sessions as sessions
import learning_platform.dev.stack as dev
import schedules
import worker

SCRIPT = """
import atexit, sys
from learning_platform.commands.process_exit import exits_without_teardown

atexit.register(lambda: print("atexit ran"))

@exits_without_teardown
def main(outcome: str) -> None:
    print("buffered output")  # a pipe is block-buffered: lost unless flushed before _exit
    if outcome == "code":
        sys.exit(3)
    if outcome == "message":
        raise SystemExit("DATABASE_URL is not set")
    if outcome == "error":
        raise RuntimeError("boom")

main(sys.argv[1])
print("never reached")
"""


def run_script(tmp_path: Path, outcome: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "entry.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return subprocess.run(
        [sys.executable, str(script), outcome],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],
    )


@pytest.mark.parametrize(
    ("outcome", "status", "stderr_has"),
    [
        ("return", 0, ""),
        ("code", 3, ""),
        ("message", 1, "DATABASE_URL is not set"),
        ("error", 1, "RuntimeError: boom"),
    ],
)
def test_status_output_and_atexit_survive(
    tmp_path: Path, outcome: str, status: int, stderr_has: str
) -> None:
    result = run_script(tmp_path, outcome)

    assert result.returncode == status, result.stderr
    assert result.stdout.splitlines() == ["buffered output", "atexit ran"]
    assert stderr_has in result.stderr


@pytest.mark.parametrize("module", [dev, schedules, sessions, worker])
def test_every_entry_point_that_opens_a_temporal_client_uses_it(module: object) -> None:
    main = module.main  # type: ignore[attr-defined]
    assert Path(main.__code__.co_filename).name == "process_exit.py"
