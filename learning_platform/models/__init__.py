"""SQLAlchemy models, one module per area; importing this package registers them all."""

from learning_platform.models.base import Base
from learning_platform.models.browsing_sessions import (
    ACTIVE_STATUSES,
    BrowsingSession,
    PageVisit,
    SessionStatus,
)
from learning_platform.models.job_gauges import JobGauge
from learning_platform.models.notifications import Notification
from learning_platform.models.outbox import OutboxEvent
from learning_platform.models.users import User

__all__ = [
    "ACTIVE_STATUSES",
    "Base",
    "BrowsingSession",
    "JobGauge",
    "Notification",
    "OutboxEvent",
    "PageVisit",
    "SessionStatus",
    "User",
]
