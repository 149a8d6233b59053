"""The declarative base, and the tables every job family shares: users, notifications, batch
checkpoints and stored gauges. Each family's own tables are in `jobs/<family>/models.py`;
`learning_platform.schema` imports them all."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    MetaData,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Deterministic constraint names, so migrations can drop/alter them by name.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: DateTime(timezone=True)}


def created_at_column() -> Mapped[datetime]:
    return mapped_column(server_default=func.now(), nullable=False)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    email: Mapped[str] = mapped_column(Text, unique=True)
    display_name: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()


class Notification(Base):
    """Notifications for users, delivered over SSE by the API (trigger → LISTEN/NOTIFY)."""

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
    # The trace of the run that wrote it (learning_platform.core.tracing), to find why it was sent.
    trace_id: Mapped[str | None] = mapped_column(Text)


class JobCheckpoint(Base):
    """Where a batch activity got to, committed with each batch (see core/batches.py)."""

    __tablename__ = "job_checkpoints"

    # workflow id / run id / activity id: shared by every attempt of one activity.
    activity_key: Mapped[str] = mapped_column(Text, primary_key=True)
    total: Mapped[int] = mapped_column(BigInteger)
    position: Mapped[Any] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)


class JobGauge(Base):
    """Gauge values computed by a job once and exported by every worker's /metrics."""

    __tablename__ = "job_gauges"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    measured_at: Mapped[datetime] = mapped_column(server_default=func.now())
