"""The one exception base for failures the person running the service can fix.

Commands and the worker's start-up end on these with their message as one line and no
traceback (`process_exit.reports_operator_errors`); the message says what to fix. Never put a
secret (a password, a key, a whole DATABASE_URL) into one.
"""

from __future__ import annotations


class OperatorError(Exception):
    """A failure a person can act on; `str()` says how. Exit status 1 unless a subclass says."""

    exit_code = 1


class UsageError(OperatorError):
    """What was typed or configured is wrong, or names something that does not exist."""

    exit_code = 2


class UnavailableError(OperatorError):
    """A dependency (PostgreSQL, Temporal) cannot be reached, or refused the request."""

    exit_code = 1
