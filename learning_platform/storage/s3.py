"""Objects in an S3 bucket through aioboto3: AWS, MinIO or any S3-compatible store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aioboto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from learning_platform.core.settings import Settings
from learning_platform.storage.base import ObjectNotFound, StorageError

# DeleteObjects takes at most this many keys per request.
_DELETE_BATCH = 1000
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


class S3ObjectStorage:
    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
    ) -> None:
        self._bucket = bucket
        self._endpoint_url = endpoint_url
        self._region = region
        # Explicit keys when given, otherwise the SDK's chain (environment, profile, IAM role).
        self._session = aioboto3.Session(
            aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key
        )
        # Path-style addressing works with MinIO and other stores without wildcard DNS.
        self._config = Config(s3={"addressing_style": "path"}, retries={"mode": "standard"})

    @classmethod
    def from_settings(cls, settings: Settings) -> S3ObjectStorage:
        if not settings.s3_bucket:
            raise ValueError("STORAGE_BACKEND=s3 needs S3_BUCKET")
        secret = settings.s3_secret_access_key
        return cls(
            settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=secret.get_secret_value() if secret else None,
        )

    @asynccontextmanager
    async def _client(self, action: str) -> AsyncIterator[Any]:
        try:
            async with self._session.client(
                "s3", endpoint_url=self._endpoint_url, region_name=self._region, config=self._config
            ) as client:
                yield client
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") in _MISSING_CODES:
                raise ObjectNotFound(
                    f"{action}: no such object in bucket {self._bucket!r}"
                ) from exc
            raise StorageError(
                f"{action} in bucket {self._bucket!r}: {error.get('Code')} {error.get('Message')}"
            ) from exc
        except BotoCoreError as exc:
            raise StorageError(f"{action} in bucket {self._bucket!r}: {exc}") from exc

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        async with self._client(f"put {key!r}") as s3:
            await s3.put_object(Bucket=self._bucket, Key=key, Body=data, ContentType=content_type)

    async def get(self, key: str) -> bytes:
        async with self._client(f"get {key!r}") as s3:
            response = await s3.get_object(Bucket=self._bucket, Key=key)
            async with response["Body"] as body:
                return bytes(await body.read())

    async def exists(self, key: str) -> bool:
        try:
            async with self._client(f"head {key!r}") as s3:
                await s3.head_object(Bucket=self._bucket, Key=key)
        except ObjectNotFound:
            return False
        return True

    async def delete(self, keys: Sequence[str]) -> None:
        async with self._client(f"delete {len(keys)} objects") as s3:
            for start in range(0, len(keys), _DELETE_BATCH):
                chunk = keys[start : start + _DELETE_BATCH]
                response = await s3.delete_objects(
                    Bucket=self._bucket,
                    Delete={"Objects": [{"Key": key} for key in chunk], "Quiet": True},
                )
                # S3 reports a missing key as deleted; anything listed here really failed.
                errors = response.get("Errors", [])
                if errors:
                    first = errors[0]
                    raise StorageError(
                        f"deleting {len(errors)} of {len(chunk)} objects from bucket "
                        f"{self._bucket!r} failed, e.g. {first.get('Key')!r}: "
                        f"{first.get('Code')} {first.get('Message')}"
                    )
