"""Sources, question sets (optimistic locking, attempts, retries) and their questions."""

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0001"

NOW = sa.text("now()")
MAX_RETRIES = 3


def _timestamp(name: str) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=NOW)


def _owner() -> sa.Column[int]:
    return sa.Column(
        "user_id", sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "sources",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        _owner(),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("storage_key", sa.Text, nullable=False, unique=True),
        sa.Column("content_type", sa.Text, nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="active"),
        sa.Column("deletion_requested_at", sa.DateTime(timezone=True)),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.CheckConstraint("status IN ('active', 'delete_pending')", name="status_known"),
        sa.CheckConstraint(
            "(status = 'delete_pending') = (deletion_requested_at IS NOT NULL)",
            name="deletion_requested_at_iff_delete_pending",
        ),
    )
    op.create_index("ix_sources_user_id", "sources", ["user_id"])
    op.create_index(
        "ix_sources_deletion_requested_at",
        "sources",
        ["deletion_requested_at"],
        postgresql_where=sa.text("status = 'delete_pending'"),
    )
    op.create_table(
        "question_sets",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        _owner(),
        # RESTRICT: a source row cannot go while a set still refers to it (source-cleanup).
        sa.Column(
            "source_id",
            sa.BigInteger,
            sa.ForeignKey("sources.id", ondelete="RESTRICT"),
            nullable=False,
        ),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("question_count", sa.Integer, nullable=False, server_default="5"),
        sa.Column("status", sa.Text, nullable=False, server_default="pending"),
        sa.Column("attempt", sa.Integer, nullable=False, server_default="1"),
        sa.Column("retry_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("retryable", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("failure_reason", sa.Text),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        _timestamp("requested_at"),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.CheckConstraint("status IN ('pending', 'completed', 'failed')", name="status_known"),
        sa.CheckConstraint(f"retry_count BETWEEN 0 AND {MAX_RETRIES}", name="retry_count_in_range"),
        sa.CheckConstraint("attempt >= 1", name="attempt_positive"),
        sa.CheckConstraint("question_count BETWEEN 1 AND 50", name="question_count_in_range"),
        # The target of questions' (question_set_id, attempt) foreign key.
        sa.UniqueConstraint("id", "attempt", name="uq_question_sets_id_attempt"),
    )
    op.create_index("ix_question_sets_user_id", "question_sets", ["user_id"])
    op.create_index("ix_question_sets_source_id", "question_sets", ["source_id"])
    # question-set-cleanup walks it in key order (keyset batches).
    op.create_index(
        "ix_question_sets_pending_requested_at_id",
        "question_sets",
        ["requested_at", "id"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_question_sets_retry_candidates",
        "question_sets",
        ["updated_at"],
        postgresql_where=sa.text(
            f"status = 'failed' AND retryable AND retry_count < {MAX_RETRIES}"
        ),
    )
    op.create_table(
        "questions",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("question_set_id", sa.BigInteger, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("prompt", sa.Text, nullable=False),
        sa.Column("choices", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("answer", sa.Text, nullable=False),
        sa.Column("explanation", sa.Text, nullable=False),
        _timestamp("created_at"),
        # Questions point at (set, attempt): a set's attempt cannot change while it holds
        # questions, so a set never holds questions of two attempts.
        sa.ForeignKeyConstraint(
            ["question_set_id", "attempt"],
            ["question_sets.id", "question_sets.attempt"],
            name="fk_questions_question_set_attempt",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("question_set_id", "position", name="uq_questions_set_position"),
    )


def downgrade() -> None:
    for table in ("questions", "question_sets", "sources"):
        op.drop_table(table)
