"""Ending a process that used a Temporal client without interpreter teardown.

temporalio's Rust core keeps native threads (its Tokio runtime) that can still call into
Python while CPython finalizes; CPython then aborts the process with "Fatal Python error:
PyGILState_Release: thread state ... must be current when releasing" and exit status -6
(SIGABRT), after the command has done its work (temporalio/sdk-python#300, open). A short
command such as `schedules.py apply` hit this in CI. The known remedy is to skip finalization:
run the atexit handlers (the embedded PostgreSQL's shutdown is one), flush, and `os._exit`.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn, ParamSpec, TypeVar

from temporalio.service import RPCError, RPCStatusCode

from learning_platform.core.errors import OperatorError, UnavailableError, UsageError

P = ParamSpec("P")
R = TypeVar("R")
DEBUG_FLAG = "--debug"
# Temporal's answers that blame the request (a note too long, …), not the server.
_REQUEST_AT_FAULT = (RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.OUT_OF_RANGE)


def exit_code_of(exc: SystemExit) -> int:
    """The status the interpreter would exit with for `exc` (printing a message as it would)."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def exits_without_teardown(main: Callable[P, object]) -> Callable[P, NoReturn]:
    """Wrap an entry point so that the process ends with its status and without finalization."""

    @functools.wraps(main)
    def run(*args: P.args, **kwargs: P.kwargs) -> NoReturn:
        try:
            main(*args, **kwargs)
            code = 0
        except SystemExit as exc:
            code = exit_code_of(exc)
        except KeyboardInterrupt:
            code = 130
        except BaseException:
            traceback.print_exc()
            code = 1
        atexit._run_exitfuncs()  # what finalization would have run first; os._exit skips it
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    return run


def as_operator_error(exc: Exception) -> OperatorError | None:
    """The one-line form of a failure a person can act on; None for anything else (a bug)."""
    if isinstance(exc, OperatorError):
        return exc
    if isinstance(exc, RPCError):
        refused = f"Temporal refused the request: {exc.status.name}: {exc.message}"
        if exc.status in _REQUEST_AT_FAULT:
            return UsageError(refused)
        return UnavailableError(refused)
    return None


def report(error: OperatorError) -> None:
    """The message as one JSON log line when logging is set up (the worker), else on stderr."""
    if logging.getLogger().handlers:
        logging.getLogger("command").error(str(error), extra={"exit_code": error.exit_code})
        return
    for line in str(error).splitlines():
        print(f"error: {line}", file=sys.stderr)


def reports_operator_errors(main: Callable[P, R]) -> Callable[P, R]:
    """Wrap a command so that a failure a person can fix ends it with one line saying what to
    fix and exit status 2 (usage, settings, unknown ids) or 1 (a dependency is unreachable),
    without a traceback unless the command line has `--debug`. Bugs still show a traceback."""

    @functools.wraps(main)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return main(*args, **kwargs)
        except Exception as exc:
            error = as_operator_error(exc)
            if error is None:
                raise
            if DEBUG_FLAG in sys.argv[1:]:
                traceback.print_exc()
            report(error)
            raise SystemExit(error.exit_code) from None

    return run
