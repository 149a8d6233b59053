"""Failures stay small enough for the Temporal server to keep while an activity retries (4 KiB
for a pending activity's last failure): an outage seen through several libraries is a chain
of exceptions with long tracebacks, and its cause must still reach the operator."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr
from temporalio.api.failure.v1 import Failure
from temporalio.converter import DataConverter
from temporalio.exceptions import ApplicationError

from learning_platform.core.settings import Settings
from learning_platform.storage import StorageError
from learning_platform.temporal.payload_codec import data_converter, new_key

# The server's limit.mutableStateActivityFailureSize (the pending activity's last failure).
SERVER_LIMIT_BYTES = 4096
DEPTH = 60  # frames per exception, as in a call through botocore and aiohttp
MESSAGE = "deleting 'sources/1.txt' in bucket 'learning': Could not connect to 127.0.0.1:9"


def _deep(depth: int, exc: BaseException) -> None:
    if depth:
        _deep(depth - 1, exc)
    raise exc


def outage() -> BaseException:
    """StorageError from five causes, each raised DEPTH frames down."""
    cause: BaseException | None = None
    for n, error in enumerate(
        [ConnectionRefusedError(111, "Connect call failed"), OSError("connect failed")]
        + [RuntimeError(f"layer {n}: " + "x" * 400) for n in range(3)]
        + [StorageError(MESSAGE + " " + "y" * 1500)]
    ):
        try:
            try:
                if cause is not None:
                    raise cause
            except BaseException as inner:
                error.__cause__ = inner
                _deep(DEPTH, error)
            _deep(DEPTH, error)
        except BaseException as raised:
            cause = raised
        assert cause is error, n
    assert cause is not None
    return cause


def converters() -> list[DataConverter]:
    keys = json.dumps({"k1": new_key()})
    return [
        data_converter(Settings()),
        data_converter(Settings(payload_codec_keys=SecretStr(keys))),
    ]


@pytest.mark.parametrize("converter", converters(), ids=["plain", "encrypted"])
async def test_a_deep_chain_of_causes_fits_the_servers_limit(converter: DataConverter) -> None:
    error = outage()
    failure = Failure()
    await converter.encode_failure(error, failure)
    assert failure.ByteSize() < SERVER_LIMIT_BYTES

    decoded = await converter.decode_failure(failure)
    assert isinstance(decoded, ApplicationError)
    assert decoded.type == "StorageError"
    assert decoded.message.startswith(MESSAGE)  # what the operator needs: the outage's cause
    assert decoded.message.endswith("… ")  # cut, and saying so
    assert "_deep" in (decoded.failure.stack_trace if decoded.failure else "")
    causes = []
    cause = decoded.cause
    while cause is not None:
        causes.append(cause)
        cause = cause.cause
    assert [c.message.split(":")[0] for c in causes] == ["layer 2", "layer 1", "layer 0"]


@pytest.mark.parametrize("converter", converters(), ids=["plain", "encrypted"])
async def test_a_long_message_of_non_ascii_text_fits_too(converter: DataConverter) -> None:
    """JSON writes each such character as six bytes: the bounds shrink until it fits."""
    try:
        _deep(DEPTH, StorageError("정리 실패: " + "é" * 3000))
    except StorageError as exc:
        failure = Failure()
        await converter.encode_failure(exc, failure)
        decoded = await converter.decode_failure(failure)
    assert failure.ByteSize() < SERVER_LIMIT_BYTES
    assert isinstance(decoded, ApplicationError)
    assert decoded.message.startswith("정리 실패: éé")


async def test_a_small_failure_is_kept_whole() -> None:
    converter = converters()[1]
    try:
        _deep(2, ValueError("bad input: fix the URL"))
    except ValueError as exc:
        failure = Failure()
        await converter.encode_failure(exc, failure)
        decoded = await converter.decode_failure(failure)
    assert isinstance(decoded, ApplicationError)
    assert decoded.message == "bad input: fix the URL"
    assert decoded.failure is not None
    assert decoded.failure.stack_trace.count("in _deep") == 3
    assert not decoded.failure.stack_trace.startswith("…")
