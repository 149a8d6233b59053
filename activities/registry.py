"""Which activities a worker runs, built from the process's dependencies."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from activities.browsing_sessions import BrowsingSessionActivities
from learning_platform.settings import Settings


@dataclass
class Dependencies:
    settings: Settings
    engine: AsyncEngine
    temporal: Client


def build_activities(deps: Dependencies) -> list[Callable[..., Any]]:
    """Activities for the main task queue (`TASK_QUEUE`); a new job family adds its own here."""
    sessions = BrowsingSessionActivities(deps.engine, deps.settings.cleanup_batch_size)
    return [
        sessions.fail_stale_sessions,
        sessions.record_active_sessions,
    ]
