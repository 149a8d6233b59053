"""Deterministic orchestration, one module per job family. No I/O, no database imports."""

from workflows.browsing_sessions import CleanupStaleSessions, UpdateMetrics
from workflows.question_sets import (
    QuestionGeneration,
    QuestionSetCleanup,
    QuestionSetRetry,
    SourceCleanup,
)

# Every workflow the worker registers; a new job family adds its classes here.
ALL_WORKFLOWS: list[type] = [
    CleanupStaleSessions,
    UpdateMetrics,
    QuestionGeneration,
    QuestionSetCleanup,
    QuestionSetRetry,
    SourceCleanup,
]
