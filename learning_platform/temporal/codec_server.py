"""The codec server: decrypts (and encrypts) payloads for an authorised operator's Temporal UI
and `temporal --codec-endpoint` (Temporal's remote codec protocol).

    POST /decode  and  POST /encode   body {"payloads": [<Payload as proto JSON>, ...]}
                                      header X-Namespace (must be TEMPORAL_NAMESPACE)

Authentication: `Authorization: Bearer <CODEC_SERVER_TOKEN>` (the CLI's `--codec-auth`), or the
session cookie `POST /login` sets after checking the same token (the dev UI has no access token
to pass; the UI sends the cookie with "Include cross-origin credentials"). The notification
API's JWTs are not accepted: they prove a *user*, and a user must never read other users'
payloads. CORS lets only CODEC_SERVER_CORS_ORIGINS (the UI) call it from a browser.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from temporalio.api.common.v1 import Payload, Payloads

from learning_platform.core.errors import ServiceError
from learning_platform.core.settings import Settings
from learning_platform.temporal.payload_codec import (
    EncryptionCodec,
    PayloadCodecError,
    payload_codec,
)

log = logging.getLogger(__name__)

# A history page's payloads; Temporal's own limit for one payload is 2 MB.
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_PAYLOADS = 10_000
SESSION_COOKIE = "codec_session"
_LOGIN_FORM = """<!doctype html><title>Codec server</title>
<form method="post" action="login"><label>Codec server token
<input type="password" name="token" autofocus></label> <button>Sign in</button></form>
<p>Then enable "Include cross-origin credentials" in the Temporal UI's codec settings.</p>"""


class CodecServerConfigError(ServiceError, ValueError):
    """The codec server cannot run with these settings."""


def _session_value(token: str) -> str:
    """The cookie's value: derived from the token, so the cookie never holds the token."""
    return hmac.new(token.encode(), b"codec-server-session", hashlib.sha256).hexdigest()


class _Guard:
    def __init__(self, settings: Settings) -> None:
        if settings.codec_server_token is None:
            raise CodecServerConfigError(
                "set CODEC_SERVER_TOKEN: the codec server decrypts every payload and never "
                "runs without authentication"
            )
        token = settings.codec_server_token.get_secret_value()
        self._bearer = f"Bearer {token}".encode()
        self._session = _session_value(token).encode()
        self._namespace = settings.temporal_namespace

    def token_matches(self, candidate: str) -> bool:
        return hmac.compare_digest(f"Bearer {candidate}".encode(), self._bearer)

    def refusal(self, request: Request) -> Response | None:
        """None when the request may be served; otherwise the response saying why not."""
        header = request.headers.get("authorization", "").encode()
        cookie = request.cookies.get(SESSION_COOKIE, "").encode()
        if not (
            hmac.compare_digest(header, self._bearer) or hmac.compare_digest(cookie, self._session)
        ):
            return PlainTextResponse(
                "authentication required: send Authorization: Bearer <CODEC_SERVER_TOKEN>",
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        namespace = request.headers.get("x-namespace", self._namespace)
        if namespace != self._namespace:
            return PlainTextResponse(
                f"this codec server serves namespace {self._namespace!r}, not {namespace!r}",
                status_code=403,
            )
        return None

    def session_cookie(self) -> str:
        return self._session.decode()


async def _bounded_body(request: Request) -> bytes | None:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return None
    return bytes(body)


def _payloads(body: bytes) -> list[Payload]:
    message = Payloads()
    json_format.Parse(body, message, ignore_unknown_fields=True)
    if len(message.payloads) > MAX_PAYLOADS:
        raise ValueError(f"at most {MAX_PAYLOADS} payloads per request")
    return list(message.payloads)


def _transform(
    guard: _Guard, codec: EncryptionCodec, transform: Callable[[Payload], Payload]
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        refusal = guard.refusal(request)
        if refusal is not None:
            return refusal
        body = await _bounded_body(request)
        if body is None:
            return PlainTextResponse(f"body over {MAX_BODY_BYTES} bytes", status_code=413)
        try:
            payloads = _payloads(body)
        except (json_format.ParseError, DecodeError, ValueError) as exc:
            return PlainTextResponse(
                f'body must be {{"payloads": [...]}} of Temporal payloads: {exc}',
                status_code=400,
            )
        try:
            result = Payloads(payloads=[transform(payload) for payload in payloads])
        except PayloadCodecError as exc:
            log.warning("codec request refused", extra={"reason": str(exc)})
            return PlainTextResponse(str(exc), status_code=422)
        return Response(json_format.MessageToJson(result), media_type="application/json")

    return endpoint


def create_codec_app(settings: Settings) -> Starlette:
    guard = _Guard(settings)
    codec = payload_codec(settings)
    if codec is None:
        raise CodecServerConfigError("set PAYLOAD_CODEC_KEYS: there is nothing to decode with")

    async def login(request: Request) -> Response:
        if request.method == "GET":
            return HTMLResponse(_LOGIN_FORM)
        body = await _bounded_body(request) or b""
        token = parse_qs(body.decode(errors="replace")).get("token", [""])[0]
        if not guard.token_matches(token):
            return PlainTextResponse("wrong token", status_code=401)
        response = PlainTextResponse("signed in: the Temporal UI can decode payloads now")
        response.set_cookie(
            SESSION_COOKIE,
            guard.session_cookie(),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/decode", _transform(guard, codec, codec.decrypt), methods=["POST"]),
            Route("/encode", _transform(guard, codec, codec.encrypt), methods=["POST"]),
            Route("/login", login, methods=["GET", "POST"]),
            Route("/health", health, methods=["GET"]),
        ],
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=settings.codec_server_cors_origins,
                allow_methods=["POST"],
                allow_headers=["Authorization", "Content-Type", "X-Namespace"],
                allow_credentials=True,
            )
        ],
    )
