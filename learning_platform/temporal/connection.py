"""Connecting to Temporal with the SDK's environment configuration (TEMPORAL_* variables)."""

from __future__ import annotations

import re
from typing import Any

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.envconfig import ClientConfigProfile
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode

from learning_platform.core.errors import UnavailableError, UsageError
from learning_platform.core.settings import Settings
from learning_platform.core.tracing import client_interceptors
from learning_platform.core.waiting import retried
from learning_platform.temporal.payload_codec import data_converter

DEFAULT_ADDRESS = "localhost:7233"
# The OS's words inside the SDK's nested transport error: `message: "Connection refused"`.
_OS_MESSAGE = re.compile(r'message: "([^"]+)"')


def connect_options(settings: Settings) -> dict[str, Any]:
    """Client.connect() keyword arguments: envconfig (address, namespace, TLS, API key, profile
    file) first, with our settings filling in what it leaves unset."""
    profile = ClientConfigProfile.load()
    options: dict[str, Any] = dict(profile.to_client_connect_config())
    options.setdefault("target_host", settings.temporal_address or DEFAULT_ADDRESS)
    options.setdefault("namespace", settings.temporal_namespace)
    return options


async def connect(settings: Settings, *, runtime: Runtime | None = None) -> Client:
    """A client of an existing namespace; an OperatorError saying what to fix otherwise."""
    options = connect_options(settings)
    target = options.pop("target_host")
    try:
        client = await Client.connect(
            target,
            runtime=runtime,
            interceptors=client_interceptors(settings),
            data_converter=data_converter(settings),
            **options,
        )
    except RuntimeError as exc:  # the SDK's core reports transport failures as RuntimeError
        found = _OS_MESSAGE.search(str(exc))
        raise UnavailableError(
            f"Temporal at {target} is unreachable ({found.group(1) if found else exc}); "
            "check TEMPORAL_ADDRESS and that the server runs"
        ) from exc
    except ValueError as exc:  # the SDK's core could not parse the address
        raise UsageError(
            f"TEMPORAL_ADDRESS {target!r} is not a HOST:PORT address such as localhost:7233 ({exc})"
        ) from exc
    except RPCError as exc:
        raise UnavailableError(
            f"Temporal at {target} refused the connection: {exc.status.name}: {exc.message}; "
            "check TEMPORAL_API_KEY and the TEMPORAL_TLS* settings"
        ) from exc
    await check_namespace(client)
    return client


async def check_namespace(client: Client) -> None:
    """Without this a missing namespace shows first as a NOT_FOUND deep inside a command."""
    try:
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=client.namespace)
        )
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        raise NamespaceMissingError(
            f"Temporal namespace {client.namespace!r} does not exist at "
            f"{client.service_client.config.target_host}; set TEMPORAL_NAMESPACE, or create it: "
            f"temporal operator namespace create --namespace {client.namespace}"
        ) from exc


class NamespaceMissingError(UsageError):
    """The namespace is not there (yet: a one-shot may run before its setup)."""


async def connect_when_ready(
    settings: Settings,
    wait_seconds: float,
    *,
    runtime: Runtime | None = None,
    since: float | None = None,
) -> Client:
    """connect(), retried while the server does not answer or its namespace is not created
    yet, for at most `wait_seconds` (from `since`, as in `waiting.retried`): a one-shot or a
    worker may be started before Temporal, or its namespace setup, is done (engines that skip
    health conditions). Then the last error, saying so."""
    options = connect_options(settings)
    return await retried(
        lambda: connect(settings, runtime=runtime),
        retry_on=(UnavailableError, NamespaceMissingError),
        wait_seconds=wait_seconds,
        since=since,
        what=f"Temporal at {options['target_host']} (namespace {options['namespace']!r})",
    )
