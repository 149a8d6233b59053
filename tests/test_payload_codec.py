"""The payload codec: AES-256-GCM with a key id per payload, key rotation, clear errors that
never carry key material. No server needed."""

from __future__ import annotations

import base64
import json

import pytest
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter

from learning_platform.core.settings import Settings
from learning_platform.jobs.ai_processing.contracts import PageRef
from learning_platform.temporal.payload_codec import (
    ENCODING,
    KEY_ID_METADATA,
    EncryptionCodec,
    PayloadCodecError,
    data_converter,
    new_key,
    parse_keys,
)

KEY_A, KEY_B = new_key(), new_key()
PRIVATE = PageRef(url="https://clinic.example/my-diagnosis", title="What my results mean")


def codec(keys: dict[str, str], encrypt: str | None = None) -> EncryptionCodec:
    return EncryptionCodec(parse_keys(json.dumps(keys), encrypt))


def converter(keys: dict[str, str], encrypt: str | None = None) -> DataConverter:
    return data_converter(
        Settings(
            payload_codec_keys=SecretStr(json.dumps(keys)), payload_codec_encrypt_key_id=encrypt
        )
    )


async def test_payloads_are_encrypted_whole_and_name_their_key() -> None:
    (payload,) = await converter({"a": KEY_A}).encode([PRIVATE])

    assert payload.metadata["encoding"] == ENCODING
    assert payload.metadata[KEY_ID_METADATA] == b"a"
    assert set(payload.metadata) == {"encoding", KEY_ID_METADATA}  # json/plain is inside
    assert b"clinic" not in payload.SerializeToString()
    assert b"results" not in payload.SerializeToString()
    assert await converter({"a": KEY_A}).decode([payload], [PageRef]) == [PRIVATE]


async def test_the_same_value_encrypts_differently_each_time() -> None:
    first, second = await converter({"a": KEY_A}).encode([PRIVATE, PRIVATE])
    assert first.data != second.data


async def test_rotation_encrypts_with_b_and_still_decrypts_what_a_encrypted() -> None:
    (written_with_a,) = await converter({"a": KEY_A}).encode([PRIVATE])
    rotated = converter({"a": KEY_A, "b": KEY_B}, encrypt="b")

    (written_with_b,) = await rotated.encode([PRIVATE])

    assert written_with_b.metadata[KEY_ID_METADATA] == b"b"
    assert await rotated.decode([written_with_a, written_with_b], [PageRef, PageRef]) == [
        PRIVATE,
        PRIVATE,
    ]


async def test_an_unknown_key_id_fails_naming_the_id_and_no_key() -> None:
    (written_with_a,) = await converter({"a": KEY_A}).encode([PRIVATE])

    with pytest.raises(PayloadCodecError) as error:
        await converter({"b": KEY_B}).decode([written_with_a])

    message = str(error.value)
    assert "'a'" in message and "PAYLOAD_CODEC_KEYS" in message
    for secret in (KEY_A, KEY_B, base64.b64decode(KEY_A).hex()):
        assert secret not in message


async def test_a_different_key_under_the_same_id_fails_clearly() -> None:
    (payload,) = await converter({"a": KEY_A}).encode([PRIVATE])
    with pytest.raises(PayloadCodecError, match="does not decrypt with the configured key"):
        await converter({"a": KEY_B}).decode([payload])


def test_a_payload_relabelled_with_another_key_id_fails() -> None:
    """The key id is authenticated: moving a payload under another configured id fails."""
    both = codec({"a": KEY_A, "b": KEY_A}, encrypt="a")
    payload = both.encrypt(Payload(metadata={"encoding": b"json/plain"}, data=b'"x"'))
    payload.metadata[KEY_ID_METADATA] = b"b"
    with pytest.raises(PayloadCodecError, match="'b'"):
        both.decrypt(payload)


async def test_plain_payloads_written_before_the_codec_still_decode() -> None:
    (plain,) = await DataConverter.default.encode([PRIVATE])
    assert await converter({"a": KEY_A}).decode([plain], [PageRef]) == [PRIVATE]


def test_no_keys_means_plain_payloads() -> None:
    assert data_converter(Settings()).payload_codec is None
    # Compose passes an unset variable as an empty one.
    empty = Settings(payload_codec_keys=SecretStr(""), payload_codec_encrypt_key_id="")
    assert data_converter(empty).payload_codec is None


async def test_an_empty_encrypt_key_id_means_the_only_key() -> None:
    one_key = converter({"a": KEY_A}, encrypt="")
    (payload,) = await one_key.encode(["x"])
    assert payload.metadata[KEY_ID_METADATA] == b"a"


@pytest.mark.parametrize(
    ("keys", "encrypt", "says"),
    [
        ("not json", None, "is not JSON"),
        ("[]", None, "non-empty JSON object"),
        (json.dumps({"a": "%%%"}), None, "key 'a' is not base64"),
        (json.dumps({"a": base64.b64encode(b"short").decode()}), None, "5 bytes; AES-256 needs"),
        (json.dumps({"a": KEY_A, "b": KEY_B}), None, "set PAYLOAD_CODEC_ENCRYPT_KEY_ID"),
        (json.dumps({"a": KEY_A}), "c", "'c' is not a key id"),
        (json.dumps({"a b": KEY_A}), None, "empty or has spaces"),
    ],
    # Named by what they say: the keys are random, and the ids of a test must not be.
    ids=[
        "not-json",
        "not-object",
        "not-base64",
        "short",
        "two-no-encrypt-id",
        "unknown-id",
        "space",
    ],
)
def test_bad_key_settings_say_what_to_fix_without_key_material(
    keys: str, encrypt: str | None, says: str
) -> None:
    with pytest.raises(PayloadCodecError, match=says) as error:
        parse_keys(keys, encrypt)
    assert KEY_A not in str(error.value) and KEY_B not in str(error.value)
