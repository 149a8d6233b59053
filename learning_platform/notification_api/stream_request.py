"""The stream request's parameters other than credentials, validated before any work is done."""

from __future__ import annotations

import re
from collections.abc import Sequence

from learning_platform.notification_api.auth import MAX_BIGINT, AuthError
from learning_platform.notification_api.refusals import Refusal

# An id this API sent: a bigint identity, so 1 to 19 ASCII digits (str.isdecimal would also
# take other scripts' digits, and int() of thousands of digits is slow or refused).
_NOTIFICATION_ID = re.compile(r"[0-9]{1,19}")


CURSOR_PARAMETER = "last_event_id"


def last_event_id(values: Sequence[str], query: str = "") -> int | None:
    """The cursor a resuming client sends (every `Last-Event-ID` header value, else the
    `last_event_id` query parameter), or None.

    The parameter is for a page that opens a *new* EventSource (which cannot set the header)
    after the old one gave up, e.g. on an expired cookie. The header wins: when that EventSource
    reconnects to the same URL, the browser sends its newer id in it."""
    from_query = _cursor([query.partition("=")[2]]) if query else None
    if not values:
        return from_query
    return _cursor(values)


def _cursor(values: Sequence[str]) -> int:
    if len(values) > 1:
        raise Refusal(400, "invalid_last_event_id", "send one Last-Event-ID header, not several")
    value = values[0]
    if not _NOTIFICATION_ID.fullmatch(value) or int(value) > MAX_BIGINT:
        raise Refusal(
            400,
            "invalid_last_event_id",
            "Last-Event-ID must be the id of an event this stream sent "
            f"(a decimal from 0 to {MAX_BIGINT}); got {value[:40]!r}",
        )
    return int(value)


def refuse_query_string(query: str, allowed: str | None = None) -> None:
    """No query parameters but `allowed` (once). Refused rather than ignored: a client that put
    its token in the URL must learn that URLs are the wrong place (they are logged)."""
    name, _, value = query.partition("=")
    if query and (name != allowed or "&" in value):
        takes = f"only '{allowed}'" if allowed else "no query parameters"
        raise AuthError(
            400,
            "invalid_request",
            f"this endpoint takes {takes}; send the token in the Authorization header, "
            "never in the URL",
        )
