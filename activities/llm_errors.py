"""One mapping from LLM errors to Temporal's retry semantics, for every AI activity."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from temporalio.exceptions import ApplicationError

from learning_platform.ai.llm import LlmPermanentError, LlmRetryableError

LLM_RETRYABLE = "LlmRetryable"
LLM_PERMANENT = "LlmPermanent"


def as_application_error(exc: LlmRetryableError | LlmPermanentError) -> ApplicationError:
    """Retryable errors keep the server's `Retry-After` as the next delay; permanent ones stop
    the activity's retries."""
    if isinstance(exc, LlmRetryableError):
        delay = None if exc.retry_after is None else timedelta(seconds=exc.retry_after)
        return ApplicationError(str(exc), type=LLM_RETRYABLE, next_retry_delay=delay)
    return ApplicationError(str(exc), type=LLM_PERMANENT, non_retryable=True)


@contextmanager
def llm_errors_as_application_errors() -> Iterator[None]:
    try:
        yield
    except (LlmRetryableError, LlmPermanentError) as exc:
        raise as_application_error(exc) from exc
