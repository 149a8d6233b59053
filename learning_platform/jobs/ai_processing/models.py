"""What the ai-processing job stores: page summaries cached by URL, what crawling each page
of a session gave, the session's mind map, and the LLM usage it cost."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Identity, Integer, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from learning_platform.core.models import Base, created_at_column

# Registers `sessions`, which these tables' foreign keys name.
from learning_platform.jobs.browsing_sessions import models as _sessions  # noqa: F401


class UrlSummary(Base):
    """One summary per URL and generator (model or offline method), shared by all sessions."""

    __tablename__ = "url_summaries"

    url: Mapped[str] = mapped_column(Text, primary_key=True)
    generator: Mapped[str] = mapped_column(Text, primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text)
    key_points: Mapped[list[str]] = mapped_column(JSONB, default=list)
    created_at: Mapped[datetime] = created_at_column()


class PageCrawl(Base):
    """The outcome of reading one page of a session (latest attempt wins)."""

    __tablename__ = "page_crawls"
    __table_args__ = (
        CheckConstraint("outcome IN ('summarized', 'cached', 'failed')", name="outcome_known"),
    )

    session_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
    )
    url: Mapped[str] = mapped_column(Text, primary_key=True)
    outcome: Mapped[str] = mapped_column(Text)
    http_status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    crawled_at: Mapped[datetime] = mapped_column(server_default=func.now())


class MindMapRecord(Base):
    __tablename__ = "mind_maps"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # Unique: a retried or repeated completion cannot store a second map.
    session_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("sessions.id", ondelete="CASCADE"), unique=True
    )
    central_topic: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    generator: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()


class SessionLlmUsage(Base):
    """Cost-relevant counts of one session's processing."""

    __tablename__ = "session_llm_usage"

    session_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
    )
    model: Mapped[str] = mapped_column(Text)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    pages_total: Mapped[int] = mapped_column(Integer, default=0)
    pages_summarized: Mapped[int] = mapped_column(Integer, default=0)
    pages_cached: Mapped[int] = mapped_column(Integer, default=0)
    pages_failed: Mapped[int] = mapped_column(Integer, default=0)
    recorded_at: Mapped[datetime] = mapped_column(server_default=func.now())
