"""The one exception base of the service, and the failures the person running it can fix.

Every exception this service raises on purpose derives from `ServiceError`, and its message
says what went wrong and what to do (never a secret: a password, a key, a whole DATABASE_URL).
`OperatorError`s end commands and the worker's start-up with that message as one line and no
traceback (`commands/process_exit.reports_operator_errors`).
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every exception this service raises on purpose; `str()` says what to do."""


class OperatorError(ServiceError):
    """A failure a person can act on; `str()` says how. Exit status 1 unless a subclass says."""

    exit_code = 1


class UsageError(OperatorError):
    """What was typed or configured is wrong, or names something that does not exist."""

    exit_code = 2


class UnavailableError(OperatorError):
    """A dependency (PostgreSQL, Temporal) cannot be reached, or refused the request."""

    exit_code = 1
