"""Bearer tokens: JWTs signed with a shared secret (HS256) or a private key (RS256/ES256)."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from learning_platform.core.settings import DEV_JWT_SECRET, Settings
from learning_platform.notification_api.refusals import Refusal

REALM = "notifications"
# users.id is a bigint identity: a positive decimal that fits in 63 bits.
_USER_ID = re.compile(r"[1-9][0-9]{0,18}")
MAX_BIGINT = 2**63 - 1
# Our tokens are ~200 characters; an RS256 one with a few claims under 1 KiB. A longer value
# is refused before any base64 or JSON decoding is spent on it.
MAX_TOKEN_CHARS = 4096
# RFC 6750 §2.1 b64token: the only characters a bearer token may hold.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# RFC 6750 §3: error_description is limited to these characters (and kept short here).
_DESCRIPTION_UNSAFE = re.compile(r"[^\x20-\x21\x23-\x5b\x5d-\x7e]")


class AuthError(Refusal):
    """A request the stream refuses: 400 (malformed credentials), 401 (who are you?) or 403
    (not for you). `error` is the code of the JSON body and of `WWW-Authenticate` alike."""

    def headers(self) -> dict[str, str]:
        if self.status == 403:
            return {}
        if self.error == "missing_token":
            # RFC 6750 §3.1: no error code when the request carried no credentials at all.
            return {"WWW-Authenticate": f'Bearer realm="{REALM}"'}
        description = _DESCRIPTION_UNSAFE.sub("?", self.description.replace('"', "'"))[:200]
        return {
            "WWW-Authenticate": (
                f'Bearer realm="{REALM}", error="{self.error}", error_description="{description}"'
            )
        }


@dataclass(frozen=True)
class _VerificationKeys:
    keys: tuple[Any, ...]
    algorithm: str


class TokenVerifier:
    """Turns an `Authorization` header into the user id in the token's `sub` claim."""

    def __init__(self, settings: Settings) -> None:
        self._verification = _verification_keys(settings)
        self._leeway = settings.jwt_leeway_seconds

    @property
    def algorithm(self) -> str:
        return self._verification.algorithm

    def user_id(self, authorization: Sequence[str]) -> int:
        """`authorization`: every `Authorization` header value of the request."""
        claims = self._claims(bearer_token(authorization))
        return user_id_from_subject(claims["sub"])

    def _claims(self, token: str) -> dict[str, Any]:
        last_error: jwt.InvalidSignatureError | None = None
        # Rotation: the current key first, then the previous one while clients move over.
        for key in self._verification.keys:
            try:
                return jwt.decode(
                    token,
                    key,
                    algorithms=[self._verification.algorithm],
                    options={"require": ["exp", "sub"]},
                    leeway=self._leeway,
                )
            except jwt.InvalidSignatureError as exc:
                last_error = exc
            except jwt.ExpiredSignatureError as exc:
                raise AuthError(401, "invalid_token", "the token has expired") from exc
            except jwt.InvalidAlgorithmError as exc:
                raise AuthError(
                    401,
                    "invalid_token",
                    f"the token is not signed with {self._verification.algorithm}",
                ) from exc
            except jwt.MissingRequiredClaimError as exc:
                raise AuthError(
                    401, "invalid_token", f"the token has no '{exc.claim}' claim"
                ) from exc
            except jwt.InvalidTokenError as exc:
                raise AuthError(401, "invalid_token", f"the token is not valid: {exc}") from exc
        raise AuthError(401, "invalid_token", "the token's signature does not verify") from (
            last_error
        )


def bearer_token(authorization: Sequence[str]) -> str:
    """The token of the request's one `Authorization: Bearer <token>` header.

    Malformed credentials are a 400 `invalid_request` (RFC 6750 §3.1): the client must fix the
    request, not sign in again."""
    if not authorization:
        raise AuthError(
            401, "missing_token", "send 'Authorization: Bearer <token>' to open the stream"
        )
    if len(authorization) > 1:
        raise AuthError(400, "invalid_request", "send one Authorization header, not several")
    scheme, _, token = authorization[0].strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthError(400, "invalid_request", "the Authorization header must be 'Bearer <token>'")
    if len(token) > MAX_TOKEN_CHARS:
        raise AuthError(
            400, "invalid_request", f"the bearer token is longer than {MAX_TOKEN_CHARS} characters"
        )
    if not _B64TOKEN.fullmatch(token):
        raise AuthError(
            400, "invalid_request", "the bearer token holds characters a token cannot have"
        )
    return token


def user_id_from_subject(subject: object) -> int:
    """403, not 401: the token is genuine and current, so signing in again cannot help;
    it names a subject that is not a user of this platform."""
    if not isinstance(subject, str) or not _USER_ID.fullmatch(subject) or int(subject) > MAX_BIGINT:
        raise AuthError(403, "forbidden", f"token subject {repr(subject)[:40]} is not a user id")
    return int(subject)


def _verification_keys(settings: Settings) -> _VerificationKeys:
    if settings.jwt_public_key:
        public_key = _load_public_key(settings.jwt_public_key)
        if isinstance(public_key, RSAPublicKey):
            return _VerificationKeys((public_key,), "RS256")
        if isinstance(public_key, EllipticCurvePublicKey):
            return _VerificationKeys((public_key,), "ES256")
        raise ValueError("JWT_PUBLIC_KEY must be an RSA (RS256) or EC P-256 (ES256) public key")
    secrets = [settings.jwt_secret.get_secret_value()]
    if settings.jwt_previous_secret is not None:
        secrets.append(settings.jwt_previous_secret.get_secret_value())
    return _VerificationKeys(tuple(secrets), "HS256")


def _load_public_key(value: str) -> Any:
    pem = value if value.lstrip().startswith("-----BEGIN") else Path(value).read_text()
    return load_pem_public_key(pem.encode())


def uses_dev_secret(settings: Settings) -> bool:
    return (
        settings.jwt_public_key is None and settings.jwt_secret.get_secret_value() == DEV_JWT_SECRET
    )


def mint_token(settings: Settings, user_id: int, ttl_seconds: float = 3600) -> str:
    """An HS256 token for `user_id` signed with JWT_SECRET (for development and tests)."""
    if settings.jwt_public_key:
        raise ValueError(
            "JWT_PUBLIC_KEY is set: tokens come from the holder of the private key, "
            "this process cannot mint them"
        )
    now = int(time.time())
    claims = {"sub": str(user_id), "iat": now, "exp": now + int(ttl_seconds)}
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")
