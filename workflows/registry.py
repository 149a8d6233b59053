"""Every workflow the worker registers. A new job family adds its classes here.

Kept out of `workflows/__init__.py` on purpose: the sandbox re-imports a workflow's module for
every run, and with the list in the package, each run would import every job family (about a
tenth of an ai-processing worker's CPU).

Versioned workers (WORKER_BUILD_ID set) pin every run to the build that started it; the
never-ending outbox relay moves to the current build at its next continue-as-new
(docs/deploying.md).
"""

from __future__ import annotations

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
