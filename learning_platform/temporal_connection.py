"""Connecting to Temporal with the SDK's environment configuration (TEMPORAL_* variables)."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client
from temporalio.envconfig import ClientConfigProfile
from temporalio.runtime import Runtime

from learning_platform.payload_codec import data_converter
from learning_platform.settings import Settings
from learning_platform.tracing import client_interceptors

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
    return await Client.connect(
        options.pop("target_host"),
        runtime=runtime,
        interceptors=client_interceptors(settings),
        data_converter=data_converter(settings),
        **options,
    )
