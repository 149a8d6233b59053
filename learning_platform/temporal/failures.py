"""Failures small enough for the Temporal server to keep.

The server keeps a pending activity's last failure (what `temporal workflow describe`, the UI's
pending-activity view and `schedules.py status` show while the activity retries) only up to
4 KiB (`limit.mutableStateActivityFailureSize`); a larger one is replaced by "Failure exceeds
size limit" and the cause of the retries is lost to the operator. The SDK's failures carry the
whole traceback of every exception in the chain: a storage outage seen through botocore and
aiohttp is five exceptions deep with a hundred frames, well over the limit.

So each failure keeps its message (the top one up to `TOP_MESSAGE_CHARS`, each cause up to
`CAUSE_MESSAGE_CHARS`), the innermost frames of its stack trace (`TOP_STACK_CHARS`,
`CAUSE_STACK_CHARS`) and at most `MAX_CAUSES` causes, within `BUDGET_BYTES` in all (smaller
bounds where characters take more bytes). The worker's log keeps the whole traceback (the SDK
logs every failed activity attempt with it).
"""

from __future__ import annotations

from typing import Any

from temporalio.api.failure.v1 import Failure
from temporalio.converter import DefaultFailureConverter, FailureConverter, PayloadConverter

TOP_MESSAGE_CHARS = 1000
TOP_STACK_CHARS = 600
CAUSE_MESSAGE_CHARS = 200
CAUSE_STACK_CHARS = 200
MAX_CAUSES = 3
# What the failure may take before the payload codec encrypts it: the codec adds about 100
# bytes to each encoded level (nonce, tag, key id), and the server allows 4,096 in all.
BUDGET_BYTES = 3000
LEFT_OUT = "… "


class CompactFailureConverter(FailureConverter):
    """The SDK's default failures, each bounded as the module says."""

    encode_common_attributes = False

    def __init__(self) -> None:
        # The inner converter builds the whole chain; its recursion stays inside it, so the
        # bounds apply once, to the finished chain.
        self._inner = DefaultFailureConverter()

    def to_failure(
        self, exception: BaseException, payload_converter: PayloadConverter, failure: Failure
    ) -> None:
        whole = Failure()
        self._inner.to_failure(exception, payload_converter, whole)
        # Characters are not bytes (JSON escapes a non-ASCII one in six): smaller bounds until
        # the result fits, the last try being the top message alone.
        for scale in (1.0, 0.5, 0.2):
            failure.CopyFrom(whole)
            self._bound(failure, payload_converter, scale, MAX_CAUSES)
            if failure.ByteSize() <= BUDGET_BYTES:
                return
        failure.CopyFrom(whole)
        self._bound(failure, payload_converter, 0.1, 0)

    def _bound(
        self, failure: Failure, payload_converter: PayloadConverter, scale: float, causes: int
    ) -> None:
        level, depth = failure, 0
        while True:
            if not level.HasField("encoded_attributes"):  # one carried over is bounded already
                top = depth == 0
                message_chars = TOP_MESSAGE_CHARS if top else CAUSE_MESSAGE_CHARS
                stack_chars = TOP_STACK_CHARS if top else CAUSE_STACK_CHARS
                level.message = _head(level.message, int(message_chars * scale))
                level.stack_trace = _tail(level.stack_trace, int(stack_chars * scale))
                if self.encode_common_attributes:
                    _encode(level, payload_converter)
            if not level.HasField("cause"):
                return
            if depth == causes:
                level.ClearField("cause")
                return
            level, depth = level.cause, depth + 1

    def from_failure(self, failure: Failure, payload_converter: PayloadConverter) -> BaseException:
        return self._inner.from_failure(failure, payload_converter)


class CompactEncodedFailureConverter(CompactFailureConverter):
    """As CompactFailureConverter, with each message and stack trace moved into an encoded
    payload, which the payload codec encrypts (the SDK's encoded-attributes form)."""

    encode_common_attributes = True


def _head(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - len(LEFT_OUT))] + LEFT_OUT


def _tail(stack_trace: str, limit: int) -> str:
    """The innermost frames (the end of the trace) that fit, from a line's start."""
    if len(stack_trace) <= limit:
        return stack_trace
    if limit <= len(LEFT_OUT):
        return ""
    kept = stack_trace[len(stack_trace) - limit + len(LEFT_OUT) :]
    newline = kept.find("\n")
    return LEFT_OUT + (kept[newline + 1 :] if newline >= 0 else kept)


def _encode(level: Failure, payload_converter: PayloadConverter) -> None:
    attributes: dict[str, Any] = {"message": level.message, "stack_trace": level.stack_trace}
    level.encoded_attributes.CopyFrom(payload_converter.to_payloads([attributes])[0])
    level.message = "Encoded failure"
    level.stack_trace = ""
