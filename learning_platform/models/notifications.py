"""Notifications for users, delivered over SSE by the API (trigger → LISTEN/NOTIFY)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Identity, Index, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from learning_platform.models.base import Base, created_at_column


class Notification(Base):
    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_user_id_id", "user_id", "id"),
        # The retention job walks it to the cutoff (migration 0007).
        Index("ix_notifications_created_at_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    # At-least-once activities may run twice; the key makes the second insert a no-op.
    dedupe_key: Mapped[str] = mapped_column(Text, unique=True)
    created_at: Mapped[datetime] = created_at_column()
    read_at: Mapped[datetime | None]
    # The trace of the run that wrote it (learning_platform.tracing), to find why it was sent.
    trace_id: Mapped[str | None] = mapped_column(Text)
