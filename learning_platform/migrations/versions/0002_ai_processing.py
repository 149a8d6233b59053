"""ai-processing: URL summary cache, page crawl outcomes, mind maps, per-session LLM usage."""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"

NOW = sa.text("now()")


def _session_fk() -> sa.Column[int]:
    return sa.Column(
        "session_id",
        sa.BigInteger,
        sa.ForeignKey("sessions.id", ondelete="CASCADE"),
        nullable=False,
        primary_key=True,
    )


def _timestamp(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=NOW)


def _count(name: str, kind: type[sa.Integer] = sa.Integer) -> sa.Column[int]:
    return sa.Column(name, kind, nullable=False, server_default="0")


def upgrade() -> None:
    op.create_table(
        "url_summaries",
        sa.Column("url", sa.Text, primary_key=True),
        sa.Column("generator", sa.Text, primary_key=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("key_points", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        _timestamp("created_at"),
    )
    op.create_table(
        "page_crawls",
        _session_fk(),
        sa.Column("url", sa.Text, primary_key=True),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("http_status", sa.Integer),
        sa.Column("error", sa.Text),
        _timestamp("crawled_at"),
        sa.CheckConstraint("outcome IN ('summarized', 'cached', 'failed')", name="outcome_known"),
    )
    op.create_table(
        "mind_maps",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "session_id",
            sa.BigInteger,
            sa.ForeignKey("sessions.id", ondelete="CASCADE"),
            nullable=False,
            unique=True,
        ),
        sa.Column("central_topic", sa.Text, nullable=False),
        sa.Column("data", JSONB, nullable=False),
        sa.Column("generator", sa.Text, nullable=False),
        _timestamp("created_at"),
    )
    op.create_table(
        "session_llm_usage",
        _session_fk(),
        sa.Column("model", sa.Text, nullable=False),
        _count("prompt_tokens", sa.BigInteger),
        _count("completion_tokens", sa.BigInteger),
        _count("requests"),
        _count("pages_total"),
        _count("pages_summarized"),
        _count("pages_cached"),
        _count("pages_failed"),
        _timestamp("recorded_at"),
    )
    # The sweep looks for processing sessions in id order.
    op.create_index(
        "ix_sessions_processing_id",
        "sessions",
        ["id"],
        postgresql_where=sa.text("status = 'processing'"),
    )


def downgrade() -> None:
    op.drop_index("ix_sessions_processing_id", table_name="sessions")
    for table in ("session_llm_usage", "mind_maps", "page_crawls", "url_summaries"):
        op.drop_table(table)
