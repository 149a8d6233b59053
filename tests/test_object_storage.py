from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from learning_platform.core.settings import Settings
from learning_platform.storage import (
    LocalObjectStorage,
    ObjectNotFound,
    ObjectStorage,
    S3ObjectStorage,
    StorageError,
    build_storage,
)
from tests.moto_s3 import ACCESS_KEY, REGION, SECRET_KEY, create_bucket, s3_server


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with s3_server() as endpoint:
        yield endpoint


def s3_settings(endpoint: str, bucket: str, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        storage_backend="s3",
        s3_bucket=bucket,
        s3_endpoint_url=endpoint,
        s3_region=REGION,
        s3_access_key_id=ACCESS_KEY,
        s3_secret_access_key=SECRET_KEY,
    )


@pytest.fixture(params=["local", "s3"])
async def storage(
    request: pytest.FixtureRequest, tmp_path: Path, s3_endpoint: str
) -> AsyncIterator[ObjectStorage]:
    if request.param == "local":
        yield build_storage(Settings(data_dir=tmp_path))
        return
    bucket = f"sources-{uuid.uuid4().hex[:8]}"
    await create_bucket(s3_endpoint, bucket)
    yield build_storage(s3_settings(s3_endpoint, bucket, tmp_path))


async def test_round_trip_and_delete(storage: ObjectStorage) -> None:
    await storage.put("users/1/notes.txt", "Photosynthesis 광합성".encode(), "text/plain")

    assert await storage.get("users/1/notes.txt") == "Photosynthesis 광합성".encode()
    assert await storage.exists("users/1/notes.txt")

    await storage.delete(["users/1/notes.txt", "users/1/never-existed.txt"])
    assert not await storage.exists("users/1/notes.txt")
    with pytest.raises(ObjectNotFound):
        await storage.get("users/1/notes.txt")
    # Deleting again is success: an object already gone counts as deleted.
    await storage.delete(["users/1/notes.txt"])


async def test_build_storage_picks_the_backend(tmp_path: Path, s3_endpoint: str) -> None:
    assert isinstance(build_storage(Settings(data_dir=tmp_path)), LocalObjectStorage)
    assert isinstance(
        build_storage(s3_settings(s3_endpoint, "any-bucket", tmp_path)), S3ObjectStorage
    )


async def test_local_objects_live_under_data_dir_objects(tmp_path: Path) -> None:
    storage = build_storage(Settings(data_dir=tmp_path))
    await storage.put("a/b.txt", b"x", "text/plain")
    assert (tmp_path / "objects" / "a" / "b.txt").read_bytes() == b"x"
    with pytest.raises(ValueError, match="relative path"):
        await storage.put("../escape.txt", b"x", "text/plain")


async def test_s3_missing_bucket_is_a_storage_error_naming_it(
    s3_endpoint: str, tmp_path: Path
) -> None:
    storage = build_storage(s3_settings(s3_endpoint, "no-such-bucket", tmp_path))
    with pytest.raises(StorageError, match="no-such-bucket"):
        await storage.delete(["a.txt"])


def test_s3_backend_needs_a_bucket() -> None:
    with pytest.raises(ValueError, match="S3_BUCKET"):
        Settings(storage_backend="s3")
