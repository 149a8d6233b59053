"""Objects as files under one directory (the embedded default)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

from learning_platform.storage.base import ObjectNotFound, StorageError


class LocalObjectStorage:
    def __init__(self, root: Path) -> None:
        self._root = root

    def _path(self, key: str) -> Path:
        relative = PurePosixPath(key)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise ValueError(f"storage key {key!r} must be a relative path without '..'")
        return self._root.joinpath(*relative.parts)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Written aside and renamed, so a reader never sees half an object.
            partial = path.with_name(path.name + ".partial")
            partial.write_bytes(data)
            partial.replace(path)

        await self._run(write)

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise ObjectNotFound(f"no object {key!r} under {self._root}") from None
        except OSError as exc:
            raise StorageError(f"reading {key!r} under {self._root}: {exc}") from exc

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).is_file)

    async def delete(self, keys: Sequence[str]) -> None:
        paths = [self._path(key) for key in keys]

        def unlink_all() -> None:
            for path in paths:
                path.unlink(missing_ok=True)

        await self._run(unlink_all)

    async def _run(self, operation: Callable[[], None]) -> None:
        try:
            await asyncio.to_thread(operation)
        except OSError as exc:
            raise StorageError(f"object storage under {self._root}: {exc}") from exc
