"""Learning records (questions solved) and the per-user statistics derived from them."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Boolean, Date, ForeignKey, Identity, Index, Integer, false, func
from sqlalchemy.orm import Mapped, mapped_column

from learning_platform.core.models import Base, created_at_column


def _user_fk(primary_key: bool = False) -> Mapped[int]:
    return mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), primary_key=primary_key
    )


class LearningRecord(Base):
    __tablename__ = "learning_records"
    __table_args__ = (
        # Covering: learn-stats-weekly counts each user's records with an index-only scan.
        Index(
            "ix_learning_records_user_id_solved_at",
            "user_id",
            "solved_at",
            postgresql_include=["correct", "stats_applied"],
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    user_id: Mapped[int] = _user_fk()
    # No foreign key: questions live in another migration branch and may be purged.
    question_id: Mapped[int] = mapped_column(BigInteger)
    solved_at: Mapped[datetime]
    correct: Mapped[bool] = mapped_column(Boolean)
    # Set by the learning.recorded handler, so a duplicate event never counts a record twice.
    stats_applied: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = created_at_column()


class LearningDay(Base):
    """Distinct calendar days (SCHEDULE_TIMEZONE) with learning: streaks are derived from these,
    so duplicate or out-of-order events cannot corrupt them."""

    __tablename__ = "learning_days"

    user_id: Mapped[int] = _user_fk(primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)


class LearnStats(Base):
    __tablename__ = "learn_stats"

    user_id: Mapped[int] = _user_fk(primary_key=True)
    # The run of consecutive learning days ending at last_learned_date; 0 once that run is
    # broken (no learning yesterday).
    current_streak: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    longest_streak: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_learned_date: Mapped[date | None] = mapped_column(Date)
    weekly_solved: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    weekly_correct: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    week_start: Mapped[date | None] = mapped_column(Date)
    total_solved: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    total_correct: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
