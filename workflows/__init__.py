"""Deterministic orchestration, one module per job family. No I/O, no database imports."""

from workflows.ai_processing import AiProcessing, ProcessSession
from workflows.browsing_sessions import CleanupStaleSessions, UpdateMetrics
from workflows.learn_stats import LearnStatsDaily, LearnStatsWeekly
from workflows.outbox_relay import EnsureOutboxRelay, OutboxRelay
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
    AiProcessing,
    ProcessSession,
    OutboxRelay,
    EnsureOutboxRelay,
    LearnStatsDaily,
    LearnStatsWeekly,
    QuestionGeneration,
    QuestionSetCleanup,
    QuestionSetRetry,
    SourceCleanup,
]
