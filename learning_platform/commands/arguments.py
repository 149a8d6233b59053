"""Argument parsing for the operator commands: bounded values, and errors as one line.

Every command builds its parser from `CommandParser`, so a bad argument raises `UsageError`
(one line, exit status 2 through `process_exit.reports_operator_errors`) instead of argparse's
usage block, and every command accepts `--debug` (show the traceback of a failure).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import NoReturn

from learning_platform.core.errors import UsageError

# PostgreSQL bigint: every id column of the schema.
MAX_DATABASE_ID = 2**63 - 1
# What an error message echoes of a typed value: enough to recognise it, never megabytes.
SHOWN_CHARS = 60


def shown(value: str) -> str:
    """`value` quoted for an error message, cut to SHOWN_CHARS."""
    if len(value) <= SHOWN_CHARS:
        return repr(value)
    return f"{value[:SHOWN_CHARS]!r}… ({len(value)} characters)"


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are UsageError and which takes `--debug`."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.add_argument(
            "--debug", action="store_true", help="on failure, show the traceback as well"
        )

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see --help)")


def bounded_int(low: int, high: int, what: str = "an integer") -> Callable[[str], int]:
    """An argparse type: an integer in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"must be {what} from {low} to {high}, got {shown(text)}"
            )
        return value

    parse.__name__ = what  # argparse names the type in its message when ValueError escapes
    return parse


database_id = bounded_int(1, MAX_DATABASE_ID, "an id")


def bounded_seconds(high: float) -> Callable[[str], float]:
    """An argparse type: a number of seconds from 0 to `high` (no nan, no infinity)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = None
        if value is None or not 0 <= value <= high:
            raise argparse.ArgumentTypeError(
                f"must be seconds from 0 to {high:g}, got {shown(text)}"
            )
        return value

    parse.__name__ = "seconds"
    return parse
