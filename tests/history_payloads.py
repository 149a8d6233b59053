"""Every payload a workflow's history stores, read raw from the server (no codec applied)."""

from __future__ import annotations

from collections.abc import Iterator

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload, SearchAttributes
from temporalio.client import WorkflowHistory


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


def payload_bytes(history: WorkflowHistory) -> int:
    """The bytes of payload data and metadata a history stores, search attributes included."""
    return sum(
        p.ByteSize() for event in history.events for p in payloads_in(event, search_attributes=True)
    )
