"""Running the entry points as processes, many at once (each start costs a second or more
of imports), and reading what they printed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class Finished:
    argv: Sequence[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def error_lines(self) -> list[str]:
        return self.stderr.strip().splitlines()


def run_at_once(
    commands: Mapping[str, tuple[Sequence[str], Mapping[str, str]]],
) -> dict[str, Finished]:
    """Start every `python ARGV` (name -> (argv, environment)) at once; wait for all."""
    started = {
        name: (argv, subprocess.Popen(
            [sys.executable, *argv], cwd=PROJECT_ROOT, env=dict(env), text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        ))
        for name, (argv, env) in commands.items()
    }  # fmt: skip
    finished = {}
    for name, (argv, process) in started.items():
        try:
            stdout, stderr = process.communicate(timeout=TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
        finished[name] = Finished(argv, process.returncode, stdout, stderr)
    return finished


def one_line_failures(
    results: Mapping[str, Finished], status: int, expected: Mapping[str, str]
) -> list[str]:
    """What is wrong with each result that should have ended with status `status` and a single
    `error: ...` line on stderr containing expected[name] (empty list: all as they should be)."""
    problems = []
    for name, result in results.items():
        lines = result.error_lines
        if (
            result.returncode != status
            or len(lines) != 1
            or not lines[0].startswith("error: ")
            or expected[name] not in lines[0]
        ):
            problems.append(f"{name}: exit {result.returncode}, stderr {result.stderr[-2000:]!r}")
    return problems
