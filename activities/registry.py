"""Which activities a worker runs, built from the process's dependencies."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from activities.browsing_sessions import BrowsingSessionActivities
from activities.question_sets import QuestionAiActivities, QuestionSetActivities
from learning_platform.ai.question_ai import build_question_ai
from learning_platform.settings import Settings
from learning_platform.storage import build_storage


@dataclass
class Dependencies:
    settings: Settings
    engine: AsyncEngine
    temporal: Client


def build_activities(deps: Dependencies) -> list[Callable[..., Any]]:
    """Activities for the main task queue (`TASK_QUEUE`); a new job family adds its own here."""
    sessions = BrowsingSessionActivities(deps.engine, deps.settings.cleanup_batch_size)
    storage = build_storage(deps.settings)
    question_sets = QuestionSetActivities(deps.engine, storage, deps.settings)
    question_ai = QuestionAiActivities(storage, build_question_ai(deps.settings))
    return [
        sessions.fail_stale_sessions,
        sessions.record_active_sessions,
        question_sets.prepare_generation,
        question_sets.save_generated_questions,
        question_sets.fail_generation_attempt,
        question_sets.fail_stale_question_sets,
        question_sets.retry_failed_question_sets,
        question_sets.delete_unused_sources,
        question_ai.generate_questions,
    ]
