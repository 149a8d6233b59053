"""One aiohttp session (its connection pool) per event loop, made on first use.

A session is bound to the loop it was made in, and its owner (the crawler, the LLM client) is
built before any loop runs; a later loop (a test's, a restarted worker's) gets a new session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp


class LoopSession:
    def __init__(self, make: Callable[[], aiohttp.ClientSession]) -> None:
        self._make = make
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> aiohttp.ClientSession:
        """The running loop's session, made now if it has none (or its own was closed)."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            self._session = self._make()
            self._loop = loop
        return self._session

    @property
    def is_closed(self) -> bool:
        """No connection pool is open (none yet, or closed)."""
        return self._session is None or self._session.closed

    async def close(self) -> None:
        """Close the connection pool (a later `get` opens a new one)."""
        if self._session is not None:
            await self._session.close()
