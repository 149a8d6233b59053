"""What an operator sees first of a run, on the dev server: its static summary and details
(`temporal workflow describe`, the UI's User Metadata tab), its current details (the same tab,
`temporal workflow metadata`) and its activities' summaries (the UI's timeline and event
history). Short, useful and never private: ids and counts, no URL, title or text."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from activities.question_sets import request_and_start_question_set
from activities.registry import Dependencies
from learning_platform.core.settings import Settings
from learning_platform.dev.embedded_temporal import temporal_cli_path
from learning_platform.jobs.ai_processing.contracts import session_workflow_id
from learning_platform.jobs.ai_processing.starters import process_session_now
from learning_platform.scheduling.declarations import declared_schedules
from learning_platform.scheduling.sync import apply
from learning_platform.storage import build_storage
from tests.ai_processing_helpers import add_processing_session
from tests.factories import add_user
from tests.history_payloads import raw_client
from tests.pages_server import serving_pages
from tests.question_set_factories import STUDY_TEXT, add_source
from tests.schedule_helpers import run_schedule_now
from worker import create_workers

SESSION_TITLE = "Reading about my diagnosis"
SOURCE_TITLE = "Notes from my therapy sessions"


@pytest.fixture(scope="module")
def pages() -> Iterator[str]:
    with serving_pages() as base:
        yield base


async def current_details(handle: WorkflowHandle[Any, Any]) -> str:
    """What `temporal workflow metadata` shows: the SDK's built-in metadata query."""
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return metadata.current_details


async def activity_summaries(handle: WorkflowHandle[Any, Any], client: Client) -> list[str]:
    """The summaries of the run's scheduled activities, decoded as the UI shows them."""
    found = []
    async for event in handle.fetch_history_events():
        scheduled = event.HasField("activity_task_scheduled_event_attributes")
        if scheduled and event.user_metadata.HasField("summary"):
            (summary,) = await client.data_converter.decode([event.user_metadata.summary])
            found.append(str(summary))
    return found


async def described(handle: WorkflowHandle[Any, Any]) -> tuple[str | None, str | None]:
    description = await handle.describe()
    return await description.static_summary(), await description.static_details()


async def cli_describe(settings: Settings, workflow_id: str) -> str:
    process = await asyncio.create_subprocess_exec(
        temporal_cli_path(), "workflow", "describe", "--workflow-id", workflow_id,
        "--address", settings.temporal_address or "", "--namespace", settings.temporal_namespace,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await process.communicate()
    assert process.returncode == 0
    return out.decode()


async def test_a_scheduled_job_run_carries_its_schedules_summary_and_reports_its_counts(
    client: Client, settings: Settings, worker: Worker
) -> None:
    await apply(client, settings, declared_schedules(settings))
    (job,) = [j for j in declared_schedules(settings) if j.schedule_id == "cleanup-stale-sessions"]

    run = await run_schedule_now(client, settings, "cleanup-stale-sessions")

    summary, details = await described(run)
    assert summary == job.description
    assert details is not None
    assert "A run of schedule `cleanup-stale-sessions`, cron `0 * * * *`" in details
    assert "memo `job_run`" in details
    progress = await current_details(run)
    assert progress.startswith("cleanup-stale-sessions: success in ")
    assert " · failed_sessions 0 · cutoff " in progress


async def test_a_session_run_says_which_session_and_what_it_did_without_its_pages(
    client: Client, engine: AsyncEngine, settings: Settings, pages: str
) -> None:
    user = await add_user(engine)
    urls = [f"{pages}/article/0", f"{pages}/article/1", f"{pages}/missing"]
    session = await add_processing_session(engine, user, urls, title=SESSION_TITLE)
    offline = settings.model_copy(update={"crawler_allowed_hosts": ["127.0.0.1"]})
    main, ai = create_workers(client, Dependencies(offline, engine, client))
    async with ai, main:
        await process_session_now(client, engine, session_id=session, task_queue=main.task_queue)
        handle = client.get_workflow_handle(session_workflow_id(session))
        await handle.result()

        summary, details = await described(handle)
        progress = await current_details(handle)

    assert summary == f"Session {session} of user {user}: 3 pages"
    assert details is not None and "`page_visits`" in details and "`mind_maps`" in details
    assert progress == ("Completed: 2 pages summarised, 0 from the cache, 1 failed; 0 LLM requests")
    for shown in (summary, details, progress):
        assert SESSION_TITLE not in shown and pages.split("//")[1] not in shown


async def test_a_question_generation_run_names_its_set_and_steps_by_ids_and_counts(
    client: Client, engine: AsyncEngine, settings: Settings, worker: Worker
) -> None:
    user = await add_user(engine)
    key = f"users/{user}/therapy-notes.txt"
    await build_storage(settings).put(key, STUDY_TEXT.encode(), "text/plain")
    source = await add_source(engine, user, key, title=SOURCE_TITLE)

    handle = await request_and_start_question_set(
        engine, client, settings, user_id=user, source_id=source, title="Quiz", question_count=3
    )
    await handle.result()

    set_id = int(handle.id.split("question-set-")[1].split("-")[0])
    summary, details = await described(handle)
    steps = await activity_summaries(handle, client)
    progress = await current_details(handle)
    assert summary == f"Question set {set_id}, attempt 1"
    assert details is not None and "`questions`" in details
    ids = f"set {set_id}, attempt 1"
    assert steps == [
        f"Is {ids} still current?",
        f"Generate 3 questions ({ids})",
        f"Save 3 questions, notify the owner ({ids})",
    ]
    assert progress == "Completed: 3 questions"
    for shown in (summary, details, progress, *steps):
        assert SOURCE_TITLE not in shown and key not in shown


async def test_the_cli_describe_shows_the_summary_and_details(
    client: Client, engine: AsyncEngine, settings: Settings, pages: str
) -> None:
    """Without the payload codec (`make dev`'s default) `temporal workflow describe` prints
    them as they are; with it, the CLI needs --codec-endpoint (docs/privacy.md)."""
    plain_client = raw_client(client)
    plain = settings.model_copy(
        update={"payload_codec_keys": None, "crawler_allowed_hosts": ["127.0.0.1"]}
    )
    user = await add_user(engine)
    session = await add_processing_session(engine, user, [f"{pages}/article/0"])
    main, ai = create_workers(plain_client, Dependencies(plain, engine, plain_client))
    async with ai, main:
        await process_session_now(
            plain_client, engine, session_id=session, task_queue=main.task_queue
        )
        await plain_client.get_workflow_handle(session_workflow_id(session)).result()

    shown = await cli_describe(plain, session_workflow_id(session))

    assert f'StaticSummary  "Session {session} of user {user}: 1 pages"' in shown
    assert 'StaticDetails  "Pages, titles, summaries and the mind map of session' in shown
