"""Debian's headless Chromium driven by playwright (the system browser; nothing downloaded)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import BrowserContext, async_playwright

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@asynccontextmanager
async def chromium(profile_dir: Path) -> AsyncIterator[BrowserContext]:
    """A browser with a fresh profile in `profile_dir`."""
    executable = shutil.which("chromium")
    assert executable, "Debian's chromium is missing: run `make test-browser`"
    async with async_playwright() as playwright:
        # launch_persistent_context owns --user-data-dir.
        context = await playwright.chromium.launch_persistent_context(
            profile_dir, executable_path=executable, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield context
        finally:
            await context.close()
