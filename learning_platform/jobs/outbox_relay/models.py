"""Transactional outbox: events written in the same transaction as the change they announce."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, CheckConstraint, Identity, Index, Integer, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from learning_platform.core.models import Base, created_at_column


class OutboxEvent(Base):
    __tablename__ = "outbox_events"
    __table_args__ = (
        Index("ix_outbox_events_available_at_id", "available_at", "id"),
        Index("ix_outbox_events_aggregate", "aggregate_type", "aggregate_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    aggregate_type: Mapped[str] = mapped_column(Text)
    aggregate_id: Mapped[str] = mapped_column(Text)
    event_type: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    created_at: Mapped[datetime] = created_at_column()
    available_at: Mapped[datetime] = mapped_column(server_default=func.now())
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    # The W3C trace context of the code that wrote the event; the relay continues it.
    trace_context: Mapped[dict[str, str] | None] = mapped_column(JSONB)


class OutboxDeadLetter(Base):
    """An event that failed OUTBOX_MAX_ATTEMPTS times; `learning-jobs outbox dead-letters` lists and
    requeues them. `id` is the event's original id."""

    __tablename__ = "outbox_dead_letters"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    aggregate_type: Mapped[str] = mapped_column(Text)
    aggregate_id: Mapped[str] = mapped_column(Text)
    event_type: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer)
    last_error: Mapped[str] = mapped_column(Text)
    dead_lettered_at: Mapped[datetime] = mapped_column(server_default=func.now())


class OutboxRelayPartitions(Base):
    """How many partitions the relays split the aggregates into (one row; none means 1). The
    watchdog writes OUTBOX_RELAY_PARTITIONS here; every claim reads it."""

    __tablename__ = "outbox_relay_partitions"
    __table_args__ = (
        CheckConstraint("singleton", name="one_row"),
        CheckConstraint("partitions >= 1", name="positive"),
    )

    singleton: Mapped[bool] = mapped_column(Boolean, primary_key=True, default=True)
    partitions: Mapped[int] = mapped_column(Integer)
