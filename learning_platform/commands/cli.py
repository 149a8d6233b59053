"""`learning-jobs COMMAND [ARGS]`: every process and operator command of the service.

Each command is one module with `main(argv)`, imported only when it runs (the healthcheck must
not pay for the Temporal SDK). `python -m learning_platform COMMAND` is the same entry point.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

PROG = "learning-jobs"


@dataclass(frozen=True)
class Command:
    module: str
    summary: str


COMMANDS: dict[str, Command] = {
    "worker": Command("worker", "the Temporal workers of one process, plus /metrics"),
    "schedules": Command("schedules", "the schedules as code: apply, diff, list, status, ..."),
    "migrate": Command("learning_platform.commands.migrate", "bring the schema to the head"),
    "api": Command("learning_platform.commands.api", "the notification API (SSE); `api token`"),
    "codec-server": Command(
        "learning_platform.commands.codec_server", "decrypt payloads for the Temporal UI and CLI"
    ),
    "codec-key": Command("learning_platform.commands.codec_key", "print a new payload codec key"),
    "outbox": Command("learning_platform.commands.outbox", "the outbox's dead letters"),
    "sessions": Command("learning_platform.commands.sessions", "process a browsing session now"),
    "healthcheck": Command("learning_platform.commands.healthcheck", "the image's HEALTHCHECK"),
    "dev": Command("learning_platform.dev.stack", "the whole system on embedded defaults"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"usage: {PROG} COMMAND [ARGS] (COMMAND --help for its own)", "", "commands:"]
    lines += [f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Runs the command; each command reports its own errors (exit 2 for a usage error)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help"}:
        print(usage(), file=sys.stdout if args else sys.stderr)
        sys.exit(0 if args else 2)
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"{PROG}: no command {name[:40]!r}; one of: {', '.join(COMMANDS)}", file=sys.stderr)
        sys.exit(2)
    run: Callable[[list[str]], None] = importlib.import_module(COMMANDS[name].module).main
    run(rest)
