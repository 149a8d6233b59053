"""The worker's sandbox still refuses what would make a workflow non-deterministic.

The worker shares some modules with the sandbox instead of re-importing them per run
(`worker.WORKFLOW_SANDBOX_RESTRICTIONS`, for CPU). Sharing a workflow's own module would also
share its imports of `datetime` and `random`, unproxied: `with_passthrough_all_modules()` was
measured to let both through. These tests hold that a workflow reading the clock, drawing a
random number or opening a file fails (here as a workflow failure; in production its task
fails and retries until the code is fixed).
"""

from __future__ import annotations

import uuid

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from tests.sandbox_probes import MISUSES, SandboxCleanProbe, SandboxProbe
from worker import WORKFLOW_SANDBOX_RESTRICTIONS


async def run_probe(client: Client, workflow_run: object, *args: str) -> str:
    task_queue = f"sandbox-{uuid.uuid4()}"
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[SandboxProbe, SandboxCleanProbe],
        workflow_runner=SandboxedWorkflowRunner(restrictions=WORKFLOW_SANDBOX_RESTRICTIONS),
    ):
        result: str = await client.execute_workflow(
            workflow_run,  # type: ignore[call-overload]
            *args,
            id=f"sandbox-probe-{uuid.uuid4()}",
            task_queue=task_queue,
        )
        return result


@pytest.mark.parametrize("misuse", sorted(MISUSES))
async def test_a_workflow_misusing_the_outside_world_fails(client: Client, misuse: str) -> None:
    with pytest.raises(WorkflowFailureError) as failure:
        await run_probe(client, SandboxProbe.run, misuse)
    assert "Cannot access" in str(failure.value.cause), failure.value.cause


async def test_a_workflow_using_workflow_time_runs(client: Client) -> None:
    assert await run_probe(client, SandboxCleanProbe.run)
