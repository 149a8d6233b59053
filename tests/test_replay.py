"""The replay corpus against the current workflow code: a change to a workflow's commands that
running workflows would trip over fails here, until it is patched or versioned.

The histories under tests/replay/histories/ were recorded from real runs (`make
record-histories`, tests/replay/record.py); every folder is one recording, and older folders
stay while workflows of that code may still be running (docs/deploying.md). Replay runs in
this process: no server.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from tests.codec_keys import encrypting_converter
from tests.replay.record import HISTORIES, registered_workflow_types
from worker import WORKFLOW_SANDBOX_RESTRICTIONS
from workflows.registry import ALL_WORKFLOWS

CORPUS = sorted(HISTORIES.glob("*/*.json"))


def load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


def workflow_type_of(path: Path) -> str:
    started = json.loads(path.read_text())["events"][0]
    return str(started["workflowExecutionStartedEventAttributes"]["workflowType"]["name"])


@pytest.fixture(scope="module")
def replayer() -> Replayer:
    """The production worker's workflows in the production sandbox, decrypting with the tests'
    key (histories recorded before the payload codec are plain and pass through it)."""
    return Replayer(
        workflows=ALL_WORKFLOWS,
        data_converter=encrypting_converter(),
        workflow_runner=SandboxedWorkflowRunner(restrictions=WORKFLOW_SANDBOX_RESTRICTIONS),
    )


async def test_every_recorded_history_replays_on_current_code(replayer: Replayer) -> None:
    """One replaying worker for the whole corpus (a worker per file took ~1 s each)."""
    assert CORPUS, f"no recorded histories under {HISTORIES}: run `make record-histories`"
    histories = {load(path).run_id: path for path in CORPUS}
    assert len(histories) == len(CORPUS), "two files hold the same run"

    async def each() -> AsyncIterator[WorkflowHistory]:
        for path in CORPUS:
            yield load(path)

    results = await replayer.replay_workflows(each(), raise_on_replay_failure=False)
    failed = {
        f"{histories[run].parent.name}/{histories[run].name}": str(error)
        for run, error in results.replay_failures.items()
    }
    assert not failed, "histories that no longer replay (patch or version the change, see "
    "docs/deploying.md):\n" + "\n".join(f"{name}: {error}" for name, error in failed.items())


def test_every_registered_workflow_type_has_recorded_histories() -> None:
    recorded = {workflow_type_of(path) for path in CORPUS}
    missing = registered_workflow_types() - recorded
    assert not missing, (
        f"no recorded history for {sorted(missing)}: add a scenario to tests/replay/record.py "
        "and run `make record-histories`"
    )


def test_the_latest_recording_covers_every_workflow_type() -> None:
    """A recording is one consistent snapshot of the code; a partial one would leave a type's
    current commands untested once its older folder is retired."""
    latest = max(HISTORIES.iterdir(), key=lambda folder: folder.name)
    recorded = {workflow_type_of(path) for path in latest.glob("*.json")}
    assert registered_workflow_types() <= recorded, (
        f"{latest.name} lacks {registered_workflow_types() - recorded}"
    )
