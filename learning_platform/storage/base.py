"""What every storage backend offers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from learning_platform.core.errors import ServiceError


class StorageError(ServiceError):
    """The store could not be reached or refused the operation; retrying may help."""


class ObjectNotFound(StorageError):
    """No object under that key."""


class ObjectStorage(Protocol):
    async def put(self, key: str, data: bytes, content_type: str) -> None: ...

    async def get(self, key: str) -> bytes:
        """The object's bytes; `ObjectNotFound` when there is none."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, keys: Sequence[str]) -> None:
        """Delete every key; a key with no object counts as deleted."""
        ...
