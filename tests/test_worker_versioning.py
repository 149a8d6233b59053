"""Worker Versioning: workers with a build id form a deployment version; what schedules and the
app's starters start lands on the current version, with each workflow's declared behaviour."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import VersioningBehavior

from activities.outbox_relay import relay_workflow_id
from activities.registry import Dependencies
from learning_platform.core.settings import Settings
from learning_platform.jobs.ai_processing.contracts import session_workflow_id
from learning_platform.jobs.ai_processing.starters import start_session_workflow
from learning_platform.scheduling.declarations import declared_schedules
from learning_platform.scheduling.sync import apply
from tests.factories import add_session, add_user
from tests.learning_helpers import wait_for
from tests.schedule_helpers import run_schedule_now
from tests.worker_versions import landed_on, set_current_version
from worker import create_workers, deployment_config


def test_no_build_id_means_unversioned_workers() -> None:
    assert deployment_config(Settings(worker_build_id=None)) is None
    assert deployment_config(Settings(worker_build_id="  ")) is None
    config = deployment_config(Settings(worker_build_id="2026-12-01.abc"))
    assert config is not None
    assert config.version.to_canonical_string() == "learning-jobs.2026-12-01.abc"
    assert config.default_versioning_behavior == VersioningBehavior.PINNED


def test_a_deployment_name_with_a_dot_is_refused_with_what_to_use() -> None:
    with pytest.raises(ValidationError, match=r"WORKER_DEPLOYMENT_NAME='jobs\.v2' must .* no '\.'"):
        Settings(worker_deployment_name="jobs.v2")


def versioned(settings: Settings, build_id: str) -> Settings:
    return settings.model_copy(
        update={
            "worker_deployment_name": f"deploy-{settings.task_queue}",
            "worker_build_id": build_id,
            "outbox_drain_minutes": 0.02,  # relay runs of ~1 s: quick continue-as-new
        }
    )


async def test_scheduled_and_app_started_runs_land_on_the_current_version(
    client: Client, settings: Settings, engine: AsyncEngine, task_queue: str
) -> None:
    v1 = versioned(settings, "build-1")
    await apply(client, v1, declared_schedules(v1))
    main, ai = create_workers(client, Dependencies(v1, engine, client))
    # Bounded: a run on a version nobody polls would wait for ever.
    async with ai, main, asyncio.timeout(60):
        await set_current_version(client, v1.worker_deployment_name, "build-1")

        cleanup = await run_schedule_now(client, v1, "cleanup-stale-sessions")
        assert await landed_on(cleanup) == ("build-1", VersioningBehavior.PINNED)

        user = await add_user(engine)
        session = await add_session(engine, user, "completed")
        await start_session_workflow(
            client, session_id=session, user_id=user, page_count=0, task_queue=task_queue
        )
        started = client.get_workflow_handle(session_workflow_id(session))
        await started.result()
        assert await landed_on(started) == ("build-1", VersioningBehavior.PINNED)


async def test_the_relay_moves_to_a_new_current_build_at_its_next_continue_as_new(
    client: Client, settings: Settings, engine: AsyncEngine
) -> None:
    v1, v2 = versioned(settings, "build-1"), versioned(settings, "build-2")
    await apply(client, v1, declared_schedules(v1))
    relay = client.get_workflow_handle(relay_workflow_id(v1))
    old_main, old_ai = create_workers(client, Dependencies(v1, engine, client))
    async with old_ai, old_main, asyncio.timeout(60):
        await set_current_version(client, v1.worker_deployment_name, "build-1")
        await run_schedule_now(client, v1, "outbox-relay")
        first_run = (await relay.describe()).run_id

        # The schedule's run only starts the relay: the version is recorded when the relay's
        # first workflow task completes, which can be just after.
        async def on_old_build() -> bool:
            return await landed_on(relay) == ("build-1", VersioningBehavior.PINNED)

        await wait_for(on_old_build, within=30)

        new_main, new_ai = create_workers(client, Dependencies(v2, engine, client))
        async with new_ai, new_main:
            await set_current_version(client, v1.worker_deployment_name, "build-2")

            async def on_new_build() -> bool:
                return await landed_on(relay) == ("build-2", VersioningBehavior.PINNED)

            await wait_for(on_new_build, within=30)
            old_run = await client.get_workflow_handle(relay.id, run_id=first_run).describe()
            assert old_run.status == WorkflowExecutionStatus.CONTINUED_AS_NEW
            await relay.terminate("test finished")
