"""History bytes of one session's ProcessSession workflow and of one question set's
QuestionGeneration workflow (not a timing: the machine's load does not change it).

One session of PAGES loopback pages runs through the production workers (in this process) and
a loopback Chat Completions server; then one set of QUESTIONS questions is generated from a
stored source (the offline question builder). Each workflow's history is read raw from the
server and the bytes of every payload in it summed, once with the payload codec off and once
on (a fresh key).

    .venv/bin/python -m bench.history_size [--pages 10] [--questions 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import uuid
from pathlib import Path

from pydantic import SecretStr
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from bench.stack import database_url
from learning_platform.commands.process_exit import exits_without_teardown
from learning_platform.core.database import create_engine, resolve_database_url
from learning_platform.core.settings import Settings
from learning_platform.dev.embedded_temporal import search_attribute_args, temporal_cli_path
from learning_platform.migrations import upgrade
from learning_platform.storage import build_storage
from learning_platform.temporal.payload_codec import data_converter, new_key
from tests.ai_processing_helpers import add_processing_session, summarising_responder
from tests.factories import add_user
from tests.fake_openai import FakeOpenAI
from tests.history_payloads import (
    generated_question_set_history,
    payload_bytes,
    processed_session_history,
)
from tests.pages_server import serving_pages
from tests.question_set_factories import STUDY_TEXT, add_source


def converting_client(env: WorkflowEnvironment, settings: Settings) -> Client:
    raw: Client = env.client  # the default converter: payloads as the server stores them
    return Client(
        raw.service_client, namespace=raw.namespace, data_converter=data_converter(settings)
    )


async def one_session(
    env: WorkflowEnvironment, settings: Settings, pages: int, pages_url: str
) -> tuple[int, int]:
    """(payload bytes, events) of one session's history."""
    client = converting_client(env, settings)
    engine = create_engine(resolve_database_url(settings), pool_size=2)
    try:
        user = await add_user(engine, email=f"{uuid.uuid4().hex[:8]}@example.com")
        urls = [f"{pages_url}/article/{n}?utm={uuid.uuid4().hex}" for n in range(pages)]
        session = await add_processing_session(engine, user, urls)
        result, history = await processed_session_history(client, engine, settings, session)
        assert result.outcome == "completed", result
        return payload_bytes(history), len(history.events)
    finally:
        await engine.dispose()


async def one_question_set(
    env: WorkflowEnvironment, settings: Settings, questions: int
) -> tuple[int, int]:
    """(payload bytes, events) of one question set's generation history."""
    client = converting_client(env, settings)
    engine = create_engine(resolve_database_url(settings), pool_size=2)
    try:
        user = await add_user(engine, email=f"{uuid.uuid4().hex[:8]}@example.com")
        key = f"users/{user}/{uuid.uuid4().hex}-notes.txt"
        await build_storage(settings).put(key, STUDY_TEXT.encode(), "text/plain")
        source = await add_source(engine, user, key)
        result, history = await generated_question_set_history(
            client, engine, settings, user_id=user, source_id=source, title="Memory quiz",
            question_count=questions,
        )  # fmt: skip
        assert result.outcome == "completed", result
        return payload_bytes(history), len(history.events)
    finally:
        await engine.dispose()


async def run(pages: int, questions: int) -> None:
    url = database_url()
    await asyncio.to_thread(upgrade, url)
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli_path(),
        dev_server_extra_args=search_attribute_args(),
    )
    with (
        serving_pages() as pages_url,
        FakeOpenAI.running() as llm,
        tempfile.TemporaryDirectory(prefix="bench-objects-") as objects,
    ):
        llm.responder = summarising_responder
        base = Settings(
            database_url=url,
            task_queue=f"bench-{uuid.uuid4().hex[:8]}",
            metrics_port=0,
            data_dir=Path(objects),
            **llm.settings_update(crawler_allowed_hosts=["127.0.0.1"]),
        )
        keys = SecretStr(json.dumps({"bench": new_key()}))
        for label, settings in [
            ("codec off", base),
            ("codec on", base.model_copy(update={"payload_codec_keys": keys})),
        ]:
            size, events = await one_session(env, settings, pages, pages_url)
            print(
                f"ProcessSession      {label:9}  {pages} pages      {events} events  "
                f"{size:,} payload bytes"
            )
            offline = settings.model_copy(update={"openai_api_key": None})
            size, events = await one_question_set(env, offline, questions)
            print(
                f"QuestionGeneration  {label:9}  {questions} questions  {events} events  "
                f"{size:,} payload bytes"
            )
    await env.shutdown()


@exits_without_teardown
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=10)
    parser.add_argument("--questions", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(run(args.pages, args.questions))


if __name__ == "__main__":
    main()
