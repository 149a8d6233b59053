"""A worker process killed (SIGKILL) in the middle of a session: another worker finishes the
session, and the user still gets exactly one mind map and one notification."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from activities.registry import Dependencies
from learning_platform.core.settings import PROJECT_ROOT, Settings
from learning_platform.jobs.ai_processing.contracts import ProcessSessionResult, session_workflow_id
from learning_platform.jobs.ai_processing.starters import process_session_now
from tests.ai_processing_helpers import add_processing_session, rows, summarising_responder
from tests.factories import add_user
from tests.fake_openai import FakeOpenAI, RecordedRequest, Reply
from tests.pages_server import serving_pages
from tests.worker_process import worker_env
from worker import create_workers


@pytest.fixture
def llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI.running() as fake:
        yield fake


def start_worker_process(settings: Settings, llm: FakeOpenAI, log: Path) -> subprocess.Popen[bytes]:
    env = worker_env(
        settings,
        METRICS_PORT="0",
        OPENAI_API_KEY="test-key",
        OPENAI_BASE_URL=llm.base_url,
        OPENAI_MODEL=llm.model,
        CRAWLER_ALLOWED_HOSTS=json.dumps(["127.0.0.1"]),
    )
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, str(PROJECT_ROOT / "worker.py")],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


async def test_killed_worker_mid_session_is_finished_by_another_without_duplicates(
    engine: AsyncEngine, client: Client, settings: Settings, llm: FakeOpenAI, tmp_path: Path
) -> None:
    held = threading.Event()

    def held_until_released(request: RecordedRequest) -> Reply:
        reply = summarising_responder(request)
        reply.gate = held
        return reply

    llm.responder = held_until_released
    with serving_pages() as pages:
        user = await add_user(engine)
        session = await add_processing_session(
            engine, user, [f"{pages}/article/{n}" for n in range(3)]
        )
        doomed = start_worker_process(settings, llm, tmp_path / "worker.log")
        try:
            assert await process_session_now(
                client, engine, session_id=session, task_queue=settings.task_queue
            )
            await llm.wait_for_requests(1, within_seconds=60)
        finally:
            doomed.send_signal(signal.SIGKILL)
            doomed.wait()
        requests_before_kill = len(llm.requests)
        llm.responder = summarising_responder
        held.set()

        survivor_settings = settings.model_copy(
            update=llm.settings_update(crawler_allowed_hosts=["127.0.0.1"])
        )
        deps = Dependencies(settings=survivor_settings, engine=engine, temporal=client)
        main, ai = create_workers(client, deps)
        async with ai, main:
            handle = client.get_workflow_handle(
                session_workflow_id(session), result_type=ProcessSessionResult
            )
            result = await handle.result()

    assert requests_before_kill >= 1, (tmp_path / "worker.log").read_text()
    assert result.outcome == "completed"
    assert len(await rows(engine, "SELECT 1 FROM mind_maps WHERE session_id = :s", s=session)) == 1
    notifications = await rows(engine, "SELECT kind FROM notifications")
    assert [n.kind for n in notifications] == ["session.completed"]
    (status,) = await rows(engine, "SELECT status FROM sessions WHERE id = :s", s=session)
    assert status.status == "completed"
    assert len(llm.requests_for("mind_map")) == 1
