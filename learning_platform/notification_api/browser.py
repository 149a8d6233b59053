"""What browser pages need: a stream cookie instead of a header, and an origin check.

A page's native `EventSource` cannot send `Authorization`, and reconnects to the same URL with
only cookies and `Last-Event-ID`. So the page trades its bearer token for a short-lived
HttpOnly cookie (`POST /v1/notifications/stream-cookie`), scoped to the stream's path, which
the browser sends on every (re)connect. The threat model is in docs/notifications.md.
"""

from __future__ import annotations

import hashlib
import hmac
import time

import jwt
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from learning_platform.core.settings import Settings
from learning_platform.notification_api.auth import AuthError, user_id_from_subject
from learning_platform.notification_api.refusals import Refusal

COOKIE_NAME = "notifications_stream"
STREAM_COOKIE_PATH = "/v1/notifications/stream-cookie"
# The cookie is not a bearer token: another key and an audience of its own.
_AUDIENCE = "notifications-stream-cookie"
_KEY_LABEL = b"learning-platform notifications stream cookie v1"


class StreamCookies:
    """Mints and checks the stream cookie (HS256 under a key derived for this purpose only)."""

    def __init__(self, settings: Settings, stream_path: str) -> None:
        self._key = _cookie_key(settings)
        self._ttl = settings.api_stream_cookie_ttl_seconds
        self._secure = settings.api_stream_cookie_secure
        self._stream_path = stream_path

    @property
    def enabled(self) -> bool:
        return self._key is not None

    def issue(self, user_id: int) -> Response:
        """The answer to a page that proved who it is with its bearer token."""
        assert self._key is not None
        now = int(time.time())
        value = jwt.encode(
            {"sub": str(user_id), "aud": _AUDIENCE, "iat": now, "exp": now + int(self._ttl)},
            self._key,
            algorithm="HS256",
        )
        response = JSONResponse(
            {"expires_in": int(self._ttl), "refresh_in": max(1, int(self._ttl / 2))},
            status_code=200,
        )
        response.set_cookie(
            COOKIE_NAME,
            value,
            max_age=int(self._ttl),
            path=self._stream_path,
            secure=self._secure,
            httponly=True,
            samesite="strict",
        )
        return response

    def clear(self) -> Response:
        response = Response(status_code=204)
        response.delete_cookie(
            COOKIE_NAME, path=self._stream_path, secure=self._secure, httponly=True,
            samesite="strict",
        )  # fmt: skip
        return response

    def user_id(self, value: str) -> int:
        if self._key is None:
            raise AuthError(401, "invalid_token", "stream cookies are off on this server")
        if len(value) > 1024:
            raise AuthError(400, "invalid_request", "the stream cookie is too long")
        try:
            claims = jwt.decode(
                value,
                self._key,
                algorithms=["HS256"],
                audience=_AUDIENCE,
                options={"require": ["exp", "sub", "aud"]},
            )
        except jwt.InvalidTokenError as exc:
            raise AuthError(
                401,
                "invalid_token",
                f"the stream cookie is not valid ({type(exc).__name__}); "
                f"POST {STREAM_COOKIE_PATH} with the bearer token for a new one",
            ) from exc
        return user_id_from_subject(claims["sub"])


def _cookie_key(settings: Settings) -> bytes | None:
    if settings.api_stream_cookie_secret is not None:
        return settings.api_stream_cookie_secret.get_secret_value().encode()
    if settings.jwt_public_key:
        # The HS256 secret is not the token key then (maybe the default): derive nothing from it.
        return None
    secret = settings.jwt_secret.get_secret_value().encode()
    return hmac.new(secret, _KEY_LABEL, hashlib.sha256).digest()


def check_origin(request: Request, allowed: frozenset[str]) -> None:
    """Refuse pages of other origins before any work: a browser sends the stream cookie with
    every same-site request (other ports of the host included), whichever page makes it."""
    origin = request.headers.get("origin")
    if origin is None or origin in allowed:
        return
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    if origin != own:
        raise Refusal(
            403,
            "origin_not_allowed",
            f"pages on {origin[:100]!r} may not use this API; add the origin to API_CORS_ORIGINS",
        )
