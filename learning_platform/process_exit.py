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
from typing import NoReturn, ParamSpec

P = ParamSpec("P")


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
