"""The next build's workflows, for the rolling-deploy scenario (s8) only; never imported by
production code. Same type names as today's, two changes:

- `ProcessSession` starts with a timer: an incompatible change (a run started on today's build
  would fail to replay on it), which only runs pinned to their build survive.
- `OutboxRelay` records its revision in its memo behind `workflow.patched`: the compatible way
  to change a workflow that may replay on newer code.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from learning_platform.jobs.ai_processing.contracts import (
    SESSION_WORKFLOW,
    ProcessSessionInput,
    ProcessSessionResult,
)
from learning_platform.jobs.outbox_relay.contracts import OUTBOX_RELAY_WORKFLOW, OutboxRelayInput
from workflows.ai_processing import ProcessSession
from workflows.outbox_relay import OutboxRelay
from workflows.registry import ALL_WORKFLOWS

RELAY_REVISION_PATCH = "relay-revision-memo"
NEXT_RELAY_REVISION = 2


@workflow.defn(name=SESSION_WORKFLOW)
class ProcessSessionNextBuild(ProcessSession):
    @workflow.run
    async def run(self, params: ProcessSessionInput) -> ProcessSessionResult:
        await workflow.sleep(timedelta(milliseconds=10))
        return await super().run(params)


@workflow.defn(name=OUTBOX_RELAY_WORKFLOW)
class OutboxRelayNextBuild(OutboxRelay):
    @workflow.run
    async def run(self, params: OutboxRelayInput) -> None:
        if workflow.patched(RELAY_REVISION_PATCH):
            workflow.upsert_memo({"relay_revision": NEXT_RELAY_REVISION})
        await super().run(params)


_REPLACED = {SESSION_WORKFLOW, OUTBOX_RELAY_WORKFLOW}
NEXT_BUILD_WORKFLOWS: list[type] = [
    cls
    for cls in ALL_WORKFLOWS
    if cls.__temporal_workflow_definition.name not in _REPLACED  # type: ignore[attr-defined]
] + [ProcessSessionNextBuild, OutboxRelayNextBuild]
