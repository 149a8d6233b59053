"""Browsing sessions recorded by the browser extension (the MindHit document)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    Text,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from learning_platform.core.models import Base, created_at_column


class SessionStatus(enum.StrEnum):
    RECORDING = "recording"
    PAUSED = "paused"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


ACTIVE_STATUSES = (SessionStatus.RECORDING, SessionStatus.PAUSED)


class BrowsingSession(Base):
    __tablename__ = "sessions"
    __table_args__ = (
        CheckConstraint(
            "status IN ('recording', 'paused', 'processing', 'completed', 'failed')",
            name="status_known",
        ),
        # The stale-session sweep walks it in key order; the active count reads it too.
        Index("ix_sessions_status_updated_at_id", "status", "updated_at", "id"),
        Index("ix_sessions_user_id", "user_id"),
        # The ai-processing sweep walks processing sessions in id order.
        Index("ix_sessions_processing_id", "id", postgresql_where=text("status = 'processing'")),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, default=SessionStatus.RECORDING)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    ended_at: Mapped[datetime | None]
    failure_reason: Mapped[str | None] = mapped_column(Text)


class PageVisit(Base):
    __tablename__ = "page_visits"
    __table_args__ = (Index("ix_page_visits_session_id", "session_id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    session_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("sessions.id", ondelete="CASCADE")
    )
    url: Mapped[str] = mapped_column(Text)
    title: Mapped[str | None] = mapped_column(Text)
    visited_at: Mapped[datetime] = mapped_column(server_default=func.now())
