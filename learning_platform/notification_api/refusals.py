"""Refused requests: one exception carrying the status, the error code and what to fix."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse

from learning_platform.core.errors import ServiceError

RETRY_SOON = {"Retry-After": "5"}


class Refusal(ServiceError):
    """A request the API answers with an error: `{"error": code, "message": what to fix}`."""

    def __init__(
        self,
        status: int,
        error: str,
        description: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description
        self._headers = dict(headers or {})

    def headers(self) -> dict[str, str]:
        return self._headers

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"error": self.error, "message": self.description},
            status_code=self.status,
            headers=self.headers(),
        )
