"""Learning sources, the question sets generated from them, and their questions (Pullit)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    Text,
    UniqueConstraint,
    func,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from learning_platform.core.models import Base, created_at_column

# question-set-retry starts at most this many automatic retries per set.
MAX_QUESTION_SET_RETRIES = 3


class SourceStatus(enum.StrEnum):
    ACTIVE = "active"
    DELETE_PENDING = "delete_pending"


class QuestionSetStatus(enum.StrEnum):
    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"


class Source(Base):
    __tablename__ = "sources"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'delete_pending')", name="status_known"),
        CheckConstraint(
            "(status = 'delete_pending') = (deletion_requested_at IS NOT NULL)",
            name="deletion_requested_at_iff_delete_pending",
        ),
        Index("ix_sources_user_id", "user_id"),
        Index(
            "ix_sources_deletion_requested_at",
            "deletion_requested_at",
            postgresql_where=text("status = 'delete_pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(Text)
    storage_key: Mapped[str] = mapped_column(Text, unique=True)
    content_type: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(Text, server_default=SourceStatus.ACTIVE)
    deletion_requested_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class QuestionSet(Base):
    __tablename__ = "question_sets"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'completed', 'failed')", name="status_known"),
        CheckConstraint(
            f"retry_count BETWEEN 0 AND {MAX_QUESTION_SET_RETRIES}", name="retry_count_in_range"
        ),
        CheckConstraint("attempt >= 1", name="attempt_positive"),
        CheckConstraint("question_count BETWEEN 1 AND 50", name="question_count_in_range"),
        UniqueConstraint("id", "attempt", name="uq_question_sets_id_attempt"),
        Index("ix_question_sets_user_id", "user_id"),
        Index("ix_question_sets_source_id", "source_id"),
        # question-set-cleanup walks it in key order (keyset batches).
        Index(
            "ix_question_sets_pending_requested_at_id",
            "requested_at",
            "id",
            postgresql_where=text("status = 'pending'"),
        ),
        Index(
            "ix_question_sets_retry_candidates",
            "updated_at",
            postgresql_where=text(
                f"status = 'failed' AND retryable AND retry_count < {MAX_QUESTION_SET_RETRIES}"
            ),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"))
    source_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("sources.id", ondelete="RESTRICT")
    )
    title: Mapped[str] = mapped_column(Text)
    question_count: Mapped[int] = mapped_column(Integer, server_default="5")
    status: Mapped[str] = mapped_column(Text, server_default=QuestionSetStatus.PENDING)
    # The generation attempt the set is on; each attempt is its own workflow.
    attempt: Mapped[int] = mapped_column(Integer, server_default="1")
    retry_count: Mapped[int] = mapped_column(Integer, server_default="0")
    retryable: Mapped[bool] = mapped_column(Boolean, server_default=true())
    failure_reason: Mapped[str | None] = mapped_column(Text)
    # Optimistic locking: every write bumps it; a writer that read an older value conflicts.
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    # When the current attempt was requested; question-set-cleanup measures the 60 min from it.
    requested_at: Mapped[datetime] = mapped_column(server_default=func.now())
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Question(Base):
    __tablename__ = "questions"
    __table_args__ = (
        ForeignKeyConstraint(
            ["question_set_id", "attempt"],
            ["question_sets.id", "question_sets.attempt"],
            name="fk_questions_question_set_attempt",
            ondelete="CASCADE",
        ),
        UniqueConstraint("question_set_id", "position", name="uq_questions_set_position"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    question_set_id: Mapped[int] = mapped_column(BigInteger)
    attempt: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer)
    prompt: Mapped[str] = mapped_column(Text)
    choices: Mapped[list[Any]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    answer: Mapped[str] = mapped_column(Text)
    explanation: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()


class QuestionDraft(Base):
    """An attempt's generated questions, staged by the activity that generated them until the
    attempt completes (the questions then move to `questions`): the questions never travel
    through the workflow's history. One row per attempt, so a retried generation finds its
    own result instead of asking the LLM again."""

    __tablename__ = "question_drafts"

    # Not a foreign key on (id, attempt) as questions have: a stale draft must not stop the
    # set from moving on to its next attempt. Drafts of other attempts go when one completes.
    question_set_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("question_sets.id", ondelete="CASCADE"), primary_key=True
    )
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    # [{"prompt", "answer", "explanation", "choices"}, ...] in position order.
    questions: Mapped[list[Any]] = mapped_column(JSONB)
    generator: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()
