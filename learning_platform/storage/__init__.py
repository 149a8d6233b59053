"""Object storage for uploaded sources: a small interface and its backends.

`build_storage(settings)` picks the backend: files under DATA_DIR/objects (the embedded
default) or an S3 bucket (AWS, MinIO or any other S3-compatible store).
"""

from __future__ import annotations

from learning_platform.core.settings import Settings
from learning_platform.storage.base import ObjectNotFound, ObjectStorage, StorageError
from learning_platform.storage.local import LocalObjectStorage
from learning_platform.storage.s3 import S3ObjectStorage


def build_storage(settings: Settings) -> ObjectStorage:
    if settings.storage_backend == "s3":
        return S3ObjectStorage.from_settings(settings)
    return LocalObjectStorage(settings.data_dir / "objects")


__all__ = [
    "LocalObjectStorage",
    "ObjectNotFound",
    "ObjectStorage",
    "S3ObjectStorage",
    "StorageError",
    "build_storage",
]
