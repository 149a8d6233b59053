"""What a worker checks at start, so that a setup it cannot work with stops it with one line
instead of failing every run later (PostgreSQL and the namespace are checked where they are
connected to: database.check_database, temporal_connection.connect)."""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from learning_platform.core.errors import UsageError
from learning_platform.jobs.contracts import SEARCH_ATTRIBUTES


def _type_name(value: int) -> str:
    return IndexedValueType.Name(value).removeprefix("INDEXED_VALUE_TYPE_").title()  # type: ignore[arg-type]


class SearchAttributeMissingError(UsageError):
    """Not registered (yet: the stack's temporal-setup may still be registering it)."""


async def check_search_attributes(client: Client) -> None:
    """The workflows set SEARCH_ATTRIBUTES; without them every ai-processing sweep fails."""
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
    except RPCError as exc:
        if exc.status in (RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.UNIMPLEMENTED):
            return  # a deployment that may not list them; the workflows' own errors remain
        raise
    namespace = client.namespace
    for name, kind in SEARCH_ATTRIBUTES.items():
        found = listed.custom_attributes.get(name)
        if found is None:
            raise SearchAttributeMissingError(
                f"Temporal namespace {namespace!r} lacks the search attribute {name} ({kind}) "
                f"that the session workflows set; register it: temporal operator "
                f"search-attribute create --namespace {namespace} --name {name} --type {kind}"
            )
        if _type_name(found) != kind:
            raise UsageError(
                f"Temporal namespace {namespace!r} has the search attribute {name} as "
                f"{_type_name(found)}, but the session workflows set it as {kind}; "
                "use a namespace where it is registered as " + kind
            )
