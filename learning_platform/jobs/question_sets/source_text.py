"""A stored source's bytes as text to make questions from; bad sources say what is wrong
(without the source's title: the message travels through Temporal's history and our logs)."""

from __future__ import annotations

from email.message import Message

from learning_platform.core.errors import ServiceError

SUPPORTED_CONTENT_TYPES = frozenset({"text/plain", "text/markdown"})


class BadSource(ServiceError):
    """A source no retry can make usable: empty, unreadable or of an unsupported type."""


def source_text(data: bytes, content_type: str) -> str:
    header = Message()
    header["content-type"] = content_type
    media_type = header.get_content_type()
    if media_type not in SUPPORTED_CONTENT_TYPES:
        raise BadSource(
            f"the source is {media_type}; questions can be made from "
            f"{', '.join(sorted(SUPPORTED_CONTENT_TYPES))} sources only"
        )
    charset = header.get_content_charset() or "utf-8"
    try:
        text = data.decode(charset)
    except (UnicodeDecodeError, LookupError) as exc:
        raise BadSource(f"the source is not readable {charset} text: {exc}") from exc
    if not text.strip():
        raise BadSource("the source is empty; upload a file with text in it")
    return text
