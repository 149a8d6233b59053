"""SQLAlchemy models, one module per area; importing this package registers them all."""

from learning_platform.models.ai_processing import (
    MindMapRecord,
    PageCrawl,
    SessionLlmUsage,
    UrlSummary,
)
from learning_platform.models.base import Base
from learning_platform.models.browsing_sessions import (
    ACTIVE_STATUSES,
    BrowsingSession,
    PageVisit,
    SessionStatus,
)
from learning_platform.models.job_checkpoints import JobCheckpoint
from learning_platform.models.job_gauges import JobGauge
from learning_platform.models.learning import LearningDay, LearningRecord, LearnStats
from learning_platform.models.notifications import Notification
from learning_platform.models.outbox import OutboxDeadLetter, OutboxEvent
from learning_platform.models.question_sets import (
    MAX_QUESTION_SET_RETRIES,
    Question,
    QuestionDraft,
    QuestionSet,
    QuestionSetStatus,
    Source,
    SourceStatus,
)
from learning_platform.models.users import User

__all__ = [
    "ACTIVE_STATUSES",
    "MAX_QUESTION_SET_RETRIES",
    "Base",
    "BrowsingSession",
    "JobCheckpoint",
    "JobGauge",
    "LearnStats",
    "LearningDay",
    "LearningRecord",
    "MindMapRecord",
    "Notification",
    "OutboxDeadLetter",
    "OutboxEvent",
    "PageCrawl",
    "PageVisit",
    "Question",
    "QuestionDraft",
    "QuestionSet",
    "QuestionSetStatus",
    "SessionLlmUsage",
    "SessionStatus",
    "Source",
    "SourceStatus",
    "UrlSummary",
    "User",
]
