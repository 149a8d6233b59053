"""Workflows that misuse the outside world, for tests/test_workflow_sandbox.py. A module of its
own: the sandbox imports a workflow's module afresh, so it imports only what a workflow may."""

from __future__ import annotations

import random
from datetime import datetime

from temporalio import workflow

MISUSES = ("clock", "random", "file")


@workflow.defn(name="SandboxProbe", failure_exception_types=[workflow.NondeterminismError])
class SandboxProbe:
    @workflow.run
    async def run(self, misuse: str) -> str:
        # Written as workflow code would be: module globals looked up at run time.
        if misuse == "clock":
            datetime.now()
        elif misuse == "random":
            random.random()
        else:
            open(__file__).close()  # noqa: ASYNC230 - the open is the misuse
        return "allowed"


@workflow.defn(name="SandboxCleanProbe")
class SandboxCleanProbe:
    @workflow.run
    async def run(self) -> str:
        return workflow.now().isoformat()
