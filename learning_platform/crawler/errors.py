"""The one exception family a page can cause: `PageUnavailableError` and its refinements."""

from __future__ import annotations

from learning_platform.core.errors import ServiceError


class PageUnavailableError(ServiceError):
    """The page cannot be read; `reason` says why in words a user understands."""

    def __init__(self, reason: str, http_status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.http_status = http_status


class UnsafeUrlError(PageUnavailableError):
    """Refused by the SSRF guard."""
