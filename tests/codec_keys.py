"""The tests' payload-codec keys: every test client encrypts, as compose deployments do.

Published test keys (they are in the source): never use them anywhere else.
"""

from __future__ import annotations

import json

from pydantic import SecretStr
from temporalio.converter import DataConverter

from learning_platform.core.settings import Settings
from learning_platform.temporal.payload_codec import data_converter

TEST_KEY_ID = "test-2026-12"
TEST_KEY = "dGVzdC1vbmx5LWtleS1wdWJsaXNoZWQtbm90LXNlY3I="  # 32 bytes
TEST_CODEC_KEYS = SecretStr(json.dumps({TEST_KEY_ID: TEST_KEY}))


def encrypting_converter() -> DataConverter:
    """The converter of the tests' clients, from the production factory."""
    return data_converter(Settings(payload_codec_keys=TEST_CODEC_KEYS))
