"""Client-side encryption of everything this service stores in Temporal, and the one data
converter every client uses (workers, schedules, the app's starters, tests, benches).

Each payload is encrypted whole (metadata and data) with AES-256-GCM and wrapped in a payload
whose metadata says `encoding: binary/encrypted` and names the key (`encryption-key-id`), so keys
can rotate: one key encrypts, every configured key decrypts. Without keys (the `make dev`
default) payloads travel as the SDK's plain JSON.

Failure messages and stack traces are encrypted too (in the SDK's encoded-attributes form): an
activity's error text can quote a user's page. Either way failures are bounded in size
(`learning_platform.temporal.failures`).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter, PayloadCodec

from learning_platform.core.errors import ServiceError
from learning_platform.core.settings import Settings
from learning_platform.temporal.failures import (
    CompactEncodedFailureConverter,
    CompactFailureConverter,
)

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
KEY_BYTES = 32
NONCE_BYTES = 12


class PayloadCodecError(ServiceError, ValueError):
    """A key setting is wrong, or a payload cannot be decrypted; never carries key material."""


@dataclass(frozen=True)
class CodecKeys:
    """The keys by id, and the id of the one that encrypts."""

    keys: Mapping[str, bytes]
    encrypt_key_id: str


def parse_keys(keys_json: str, encrypt_key_id: str | None) -> CodecKeys:
    """PAYLOAD_CODEC_KEYS (a JSON object of key id → base64 of 32 bytes) and
    PAYLOAD_CODEC_ENCRYPT_KEY_ID (may be left out when there is one key)."""
    try:
        raw = json.loads(keys_json)
    except json.JSONDecodeError:
        raise PayloadCodecError(
            "PAYLOAD_CODEC_KEYS is not JSON; set it to an object of key id -> base64 key, "
            'e.g. {"2026-12": "<base64 of 32 random bytes>"} '
            "(print a new key with: learning-jobs codec-key)"
        ) from None
    if not isinstance(raw, dict) or not raw:
        raise PayloadCodecError("PAYLOAD_CODEC_KEYS must be a non-empty JSON object")
    keys = {str(key_id): _key_bytes(str(key_id), value) for key_id, value in raw.items()}
    if encrypt_key_id is None:
        if len(keys) > 1:
            raise PayloadCodecError(
                "PAYLOAD_CODEC_KEYS holds several keys: set PAYLOAD_CODEC_ENCRYPT_KEY_ID to the "
                f"one that encrypts (one of {sorted(keys)})"
            )
        encrypt_key_id = next(iter(keys))
    if encrypt_key_id not in keys:
        raise PayloadCodecError(
            f"PAYLOAD_CODEC_ENCRYPT_KEY_ID={encrypt_key_id!r} is not a key id in "
            f"PAYLOAD_CODEC_KEYS (ids: {sorted(keys)})"
        )
    return CodecKeys(keys=keys, encrypt_key_id=encrypt_key_id)


def _key_bytes(key_id: str, value: object) -> bytes:
    if not key_id or any(c.isspace() for c in key_id):
        raise PayloadCodecError(f"PAYLOAD_CODEC_KEYS: key id {key_id!r} is empty or has spaces")
    try:
        key = base64.b64decode(str(value), validate=True)
    except binascii.Error:
        raise PayloadCodecError(
            f"PAYLOAD_CODEC_KEYS: key {key_id!r} is not base64 "
            "(print a new one with: learning-jobs codec-key)"
        ) from None
    if len(key) != KEY_BYTES:
        raise PayloadCodecError(
            f"PAYLOAD_CODEC_KEYS: key {key_id!r} is {len(key)} bytes; AES-256 needs {KEY_BYTES}"
        )
    return key


def new_key() -> str:
    """A fresh key, base64, for PAYLOAD_CODEC_KEYS."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


class EncryptionCodec(PayloadCodec):
    def __init__(self, keys: CodecKeys) -> None:
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.keys.items()}
        self._encrypt_key_id = keys.encrypt_key_id
        self._key_id_bytes = keys.encrypt_key_id.encode()

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(payload) for payload in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE_BYTES)
        # The key id is authenticated too: a payload relabelled with another id fails.
        sealed = self._ciphers[self._encrypt_key_id].encrypt(
            nonce, payload.SerializeToString(), self._key_id_bytes
        )
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID_METADATA: self._key_id_bytes},
            data=nonce + sealed,
        )

    def decrypt(self, payload: Payload) -> Payload:
        """An encrypted payload's original; any other payload as it is (histories written
        before the codec was turned on keep reading)."""
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        key_id_bytes = payload.metadata.get(KEY_ID_METADATA, b"")
        key_id = key_id_bytes.decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PayloadCodecError(
                f"payload encrypted with key id {key_id!r}, which is not in PAYLOAD_CODEC_KEYS "
                f"(configured ids: {sorted(self._ciphers)}); add that key to decrypt it"
            )
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            plain = cipher.decrypt(nonce, sealed, key_id_bytes)
        except InvalidTag:
            raise PayloadCodecError(
                f"payload encrypted with key id {key_id!r} does not decrypt with the configured "
                "key of that id (a different key under the same id, or a damaged payload)"
            ) from None
        return Payload.FromString(plain)


def codec_enabled(settings: Settings) -> bool:
    """Keys are set (an empty value, as compose passes an unset variable, is none)."""
    keys = settings.payload_codec_keys
    return keys is not None and bool(keys.get_secret_value().strip())


def payload_codec(settings: Settings) -> EncryptionCodec | None:
    """The codec the settings ask for; None when no keys are set."""
    if not codec_enabled(settings):
        return None
    assert settings.payload_codec_keys is not None
    keys = parse_keys(
        settings.payload_codec_keys.get_secret_value(),
        settings.payload_codec_encrypt_key_id or None,
    )
    return EncryptionCodec(keys)


def data_converter(settings: Settings) -> DataConverter:
    """The data converter of every Temporal client of this service."""
    codec = payload_codec(settings)
    if codec is None:
        return DataConverter(failure_converter_class=CompactFailureConverter)
    return DataConverter(
        payload_codec=codec, failure_converter_class=CompactEncodedFailureConverter
    )
