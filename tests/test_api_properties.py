"""Property-based tests (hypothesis) of the stream's request headers and JWT input.

Whatever the `Authorization` and `Last-Event-ID` headers hold, the answer is a stream or one of
the documented refusals: never a 500, never an exception out of the token verifier.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from learning_platform.core.settings import Settings
from learning_platform.notification_api.auth import AuthError, TokenVerifier
from tests.sse_helpers import SECRET, STREAM_PATH, api_server, api_settings, token

__all__ = ["api_settings"]  # a fixture

pytestmark = pytest.mark.properties

# The refusals docs/notifications.md lists for a stream request, by status.
DOCUMENTED = {
    400: {"invalid_request", "invalid_last_event_id"},
    401: {"missing_token", "invalid_token"},
    403: {"forbidden"},
    431: {"headers_too_large"},
}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
claims = st.fixed_dictionaries(
    {},
    optional={
        "sub": json_values | st.integers(min_value=0, max_value=2**64).map(str),
        "exp": json_values | st.just(int(time.time()) + 600),
        "iat": json_values,
        "nbf": json_values,
        "aud": json_values,
    },
)
jose_headers = st.fixed_dictionaries(
    {"alg": st.sampled_from(["HS256", "HS512", "none", "RS256", "ES256", ""]) | json_values},
    optional={"typ": json_values, "kid": json_values, "crit": json_values},
)


@st.composite
def jwt_shaped(draw: st.DrawFn) -> str:
    """Three base64url segments: JSON or raw bytes, signed with the right key or not."""
    header = draw(jose_headers.map(json.dumps).map(str.encode) | st.binary(max_size=64))
    payload = draw(claims.map(json.dumps).map(str.encode) | st.binary(max_size=64))
    signing_input = f"{b64url(header)}.{b64url(payload)}"
    if draw(st.booleans()):
        signature = hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    else:
        signature = draw(st.binary(max_size=64))
    return f"{signing_input}.{b64url(signature)}"


# What h11 lets through in a header value: visible ASCII, space, tab and obs-text bytes.
header_text = st.text(
    st.characters(codec="latin-1", exclude_categories=("Cc",)) | st.sampled_from(" \t"),
    max_size=60,
)
authorization_values = st.one_of(
    header_text,
    st.builds(
        "{} {}".format, st.sampled_from(["Bearer", "bearer", "Basic", "BEARER"]), header_text
    ),
    jwt_shaped().map("Bearer {}".format),
    st.builds(lambda user: f"Bearer {token(user)}", st.integers(1, 2**63 - 1)),
)
last_event_ids = st.one_of(
    header_text,
    st.integers(min_value=0, max_value=2**63 - 1).map(str),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.from_regex(r"\A[0-9]{15,25}\Z"),
    st.text("0123456789", min_size=4301, max_size=5000),
)
header_lists = st.lists(authorization_values, max_size=2)


@pytest.fixture
def verifier(api_settings: Settings) -> TokenVerifier:
    return TokenVerifier(api_settings)


@given(authorization=header_lists)
@hypothesis_settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_verifier_raises_only_documented_refusals(
    verifier: TokenVerifier, authorization: list[str]
) -> None:
    try:
        user_id = verifier.user_id(authorization)
    except AuthError as refusal:
        assert refusal.error in DOCUMENTED[refusal.status], refusal
        assert refusal.headers().get("WWW-Authenticate", "").isascii()
    else:
        assert 1 <= user_id < 2**63


@given(token_text=jwt_shaped())
@hypothesis_settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_jwt_garbage_is_an_invalid_token_or_a_refused_subject(
    verifier: TokenVerifier, token_text: str
) -> None:
    try:
        verifier.user_id([f"Bearer {token_text}"])
    except AuthError as refusal:
        assert (refusal.status, refusal.error) in {(401, "invalid_token"), (403, "forbidden")}


def encoded(value: str) -> bytes:
    return value.encode("latin-1")


def get_stream(
    http: httpx.Client, headers: list[tuple[bytes, bytes]], query: str = ""
) -> tuple[int, Any, str]:
    """(status, JSON body or None for a stream, WWW-Authenticate); a stream is closed at once."""
    url = f"{STREAM_PATH}?{quote(query, safe='=&')}" if query else STREAM_PATH
    with http.stream("GET", url, headers=headers) as response:
        body = None if response.status_code == 200 else json.loads(response.read())
        return response.status_code, body, response.headers.get("WWW-Authenticate", "")


def assert_documented(status: int, body: Any, authenticate: str) -> None:
    assert body["error"] in DOCUMENTED.get(status, set()), (status, body)
    if body["error"] in ("invalid_request", "invalid_token"):
        assert f'error="{body["error"]}"' in authenticate, (body, authenticate)


async def test_any_credentials_get_a_stream_or_a_documented_refusal(
    api_settings: Settings, engine: AsyncEngine
) -> None:
    """Against the real server; the examples run in a thread, the server in this loop."""

    @given(
        authorization=header_lists,
        cookie=st.none() | header_text | jwt_shaped(),
        query=st.just("") | header_text | last_event_ids.map("last_event_id={}".format),
    )
    def check(http: httpx.Client, authorization: list[str], cookie: str | None, query: str) -> None:
        headers = [(b"Authorization", encoded(value)) for value in authorization]
        if cookie is not None:
            headers.append((b"Cookie", b"notifications_stream=" + encoded(cookie)))
        try:
            status, body, authenticate = get_stream(http, headers, query)
        except httpx.LocalProtocolError:
            return  # httpx would not send it (a value h11 refuses); nothing reached the server
        if status != 200:
            assert_documented(status, body, authenticate)

    settings = api_settings.model_copy(update={"sse_max_connections_per_user": 10_000})
    async with api_server(settings) as url:
        with httpx.Client(base_url=url, timeout=10) as http:
            await asyncio.to_thread(check, http)


async def test_a_stream_opens_exactly_for_a_valid_last_event_id(
    api_settings: Settings, engine: AsyncEngine
) -> None:
    """With a good token, the Last-Event-ID alone decides: a notification id (ASCII digits,
    within int64) opens the stream, anything else is a 400 invalid_last_event_id."""

    @given(last_event_id=last_event_ids)
    def check(http: httpx.Client, last_event_id: str) -> None:
        value = encoded(last_event_id)
        headers = [(b"Authorization", f"Bearer {token(1)}".encode()), (b"Last-Event-ID", value)]
        try:
            status, body, _ = get_stream(http, headers)
        except httpx.LocalProtocolError:
            return
        # h11 drops the whitespace around a header value, as every HTTP server does.
        sent = value.strip(b" \t")
        # bytes.isdigit() is ASCII only; 19 digits hold every int64.
        valid = sent.isdigit() and len(sent) <= 19 and int(sent) < 2**63
        if valid:
            assert status == 200, (last_event_id, body)
        else:
            assert (status, body["error"]) == (400, "invalid_last_event_id"), last_event_id

    settings = api_settings.model_copy(update={"sse_max_connections_per_user": 10_000})
    async with api_server(settings) as url:
        with httpx.Client(base_url=url, timeout=10) as http:
            await asyncio.to_thread(check, http)
