"""Worker Versioning in tests: the operator's CLI commands and where a run landed."""

from __future__ import annotations

import asyncio
import subprocess
import time
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.common import VersioningBehavior

from learning_platform.dev.embedded_temporal import temporal_cli_path


def deployment_cli(client: Client, *args: str) -> subprocess.CompletedProcess[str]:
    """`temporal worker deployment ARGS` against the client's server, as docs/operations.md."""
    command = [
        temporal_cli_path(), "worker", "deployment", *args,
        "--address", client.service_client.config.target_host,
        "--namespace", client.namespace,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=30)


async def set_current_version(
    client: Client, deployment: str, build_id: str, within: float = 30
) -> None:
    """`set-current-version`, once the version's workers poll (the CLI refuses before)."""
    deadline = time.monotonic() + within
    while True:
        done = await asyncio.to_thread(
            deployment_cli, client, "set-current-version",
            "--deployment-name", deployment, "--build-id", build_id, "--yes",
        )  # fmt: skip
        if done.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"set-current-version {deployment}.{build_id}: {done.stderr}")
        await asyncio.sleep(0.2)


async def landed_on(handle: WorkflowHandle[Any, Any]) -> tuple[str | None, VersioningBehavior]:
    """The build id a run is on (None: unversioned) and its versioning behaviour."""
    info = (await handle.describe()).raw_description.workflow_execution_info.versioning_info
    build_id = info.deployment_version.build_id or None
    return build_id, VersioningBehavior(info.behavior)
