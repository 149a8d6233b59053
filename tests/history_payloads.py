"""Every payload a workflow's history stores, read raw from the server (no codec applied)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.common.v1 import Payload, SearchAttributes
from temporalio.client import Client, WorkflowHistory
from temporalio.converter import DataConverter

from activities.question_sets import request_and_start_question_set
from activities.registry import Dependencies
from learning_platform.core.settings import Settings
from learning_platform.jobs.ai_processing.contracts import (
    ProcessSessionInput,
    ProcessSessionResult,
    session_workflow_id,
)
from learning_platform.jobs.question_sets.contracts import QuestionGenerationResult
from worker import create_workers
from workflows.ai_processing import ProcessSession


def payloads_in(message: Message, *, search_attributes: bool) -> Iterator[Payload]:
    """Every Payload anywhere inside `message`: inputs, results, failures, heartbeat details,
    markers, memos, summaries; search attributes (indexed by the server, so never encrypted;
    ours hold ids) only when asked for."""
    for field, value in message.ListFields():
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        if field.message_type is SearchAttributes.DESCRIPTOR and not search_attributes:
            continue
        if field.message_type.GetOptions().map_entry:
            items = [v for v in value.values() if isinstance(v, Message)]
        elif field.is_repeated:
            items = list(value)
        else:
            items = [value]
        for item in items:
            if isinstance(item, Payload):
                yield item
            else:
                yield from payloads_in(item, search_attributes=search_attributes)


def history_payloads(history: WorkflowHistory) -> list[Payload]:
    """The history's payloads the codec applies to (all but search attributes)."""
    return [p for event in history.events for p in payloads_in(event, search_attributes=False)]


# The SDK core's own bookkeeping in markers (patch ids, local-activity attempt and timing) is
# written past the codec; everything our code passes is in the other payloads.
SDK_MARKER_BOOKKEEPING = {"patch-data", "data"}


def codec_payloads(history: WorkflowHistory) -> list[Payload]:
    """The history's payloads that went through the data converter."""
    found = []
    for event in history.events:
        if event.HasField("marker_recorded_event_attributes"):
            details = event.marker_recorded_event_attributes.details
            for key in sorted(set(details) - SDK_MARKER_BOOKKEEPING):
                found.extend(details[key].payloads)
        else:
            found.extend(payloads_in(event, search_attributes=False))
    return found


def payload_bytes(history: WorkflowHistory) -> int:
    """The bytes of payload data and metadata a history stores, search attributes included."""
    return sum(
        p.ByteSize() for event in history.events for p in payloads_in(event, search_attributes=True)
    )


def raw_client(client: Client) -> Client:
    """The same server through the SDK's default converter: payloads as the server holds them."""
    return Client(
        client.service_client, namespace=client.namespace, data_converter=DataConverter.default
    )


async def processed_session_history(
    client: Client, engine: AsyncEngine, settings: Settings, session_id: int
) -> tuple[ProcessSessionResult, WorkflowHistory]:
    """Process the session with the production workers on `client`; its raw history."""
    main, ai = create_workers(client, Dependencies(settings, engine, client))
    async with ai, main:
        handle = await client.start_workflow(
            ProcessSession.run,
            ProcessSessionInput(session_id=session_id),
            id=f"{session_workflow_id(session_id)}-{uuid.uuid4().hex[:6]}",
            task_queue=main.task_queue,
        )
        result = await handle.result()
    history = await raw_client(client).get_workflow_handle(handle.id).fetch_history()
    return result, history


async def generated_question_set_history(
    client: Client,
    engine: AsyncEngine,
    settings: Settings,
    *,
    user_id: int,
    source_id: int,
    title: str,
    question_count: int = 5,
) -> tuple[QuestionGenerationResult, WorkflowHistory]:
    """Request a set of the source and generate it with the production workers on `client`
    (as the app does); its attempt's raw history."""
    main, ai = create_workers(client, Dependencies(settings, engine, client))
    async with ai, main:
        handle = await request_and_start_question_set(
            engine, client, settings, user_id=user_id, source_id=source_id, title=title,
            question_count=question_count,
        )  # fmt: skip
        result = await handle.result()
    history = await raw_client(client).get_workflow_handle(handle.id).fetch_history()
    return result, history
