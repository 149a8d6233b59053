"""Connecting to Temporal with the SDK's environment configuration (TEMPORAL_* variables)."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.envconfig import ClientConfigProfile
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode

from learning_platform.settings import Settings

DEFAULT_ADDRESS = "localhost:7233"


def connect_options(settings: Settings) -> dict[str, Any]:
    """Client.connect() keyword arguments: envconfig (address, namespace, TLS, API key, profile
    file) first, with our settings filling in what it leaves unset."""
    profile = ClientConfigProfile.load()
    options: dict[str, Any] = dict(profile.to_client_connect_config())
    options.setdefault("target_host", settings.temporal_address or DEFAULT_ADDRESS)
    options.setdefault("namespace", settings.temporal_namespace)
    return options


async def connect(settings: Settings, *, runtime: Runtime | None = None) -> Client:
    options = connect_options(settings)
    return await Client.connect(options.pop("target_host"), runtime=runtime, **options)


# What waiting can fix: the server not answering yet, or its namespace not created yet.
_NOT_READY = (RPCStatusCode.UNAVAILABLE, RPCStatusCode.NOT_FOUND, RPCStatusCode.DEADLINE_EXCEEDED)


async def connect_when_ready(settings: Settings, wait_seconds: float) -> Client:
    """connect(), retried until the server answers and its namespace exists, for at most
    `wait_seconds`: a one-shot may be started before Temporal, or its namespace setup, is done
    (engines that skip health conditions). Then exits saying what it waited for."""
    deadline = time.monotonic() + wait_seconds
    delay = 0.5
    while True:
        try:
            client = await connect(settings)
            await client.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace=client.namespace)
            )
            return client
        except (RuntimeError, RPCError) as exc:
            if isinstance(exc, RPCError) and exc.status not in _NOT_READY:
                raise
            if time.monotonic() + delay > deadline:
                options = connect_options(settings)
                raise SystemExit(
                    f"Temporal at {options['target_host']} (namespace {options['namespace']!r}) "
                    f"was not ready within {wait_seconds:g} s: {exc}"
                ) from exc
            print(f"waiting for Temporal: {exc}", file=sys.stderr, flush=True)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
