"""Learning records and statistics, learning days, outbox dead letters and the relay's index."""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0001"

NOW = sa.text("now()")


def _user_id(primary_key: bool = False) -> sa.Column[int]:
    return sa.Column(
        "user_id",
        sa.BigInteger,
        sa.ForeignKey("users.id", ondelete="CASCADE"),
        primary_key=primary_key,
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "learning_records",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        _user_id(),
        # No foreign key: questions live in another migration branch and may be purged.
        sa.Column("question_id", sa.BigInteger, nullable=False),
        sa.Column("solved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("correct", sa.Boolean, nullable=False),
        sa.Column("stats_applied", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    # Covering: learn-stats-weekly counts each user's records with an index-only scan.
    op.create_index(
        "ix_learning_records_user_id_solved_at",
        "learning_records",
        ["user_id", "solved_at"],
        postgresql_include=["correct", "stats_applied"],
    )
    op.create_table(
        "learning_days",
        _user_id(primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
    )
    op.create_table(
        "learn_stats",
        _user_id(primary_key=True),
        sa.Column("current_streak", sa.Integer, nullable=False, server_default="0"),
        sa.Column("longest_streak", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_learned_date", sa.Date),
        sa.Column("weekly_solved", sa.Integer, nullable=False, server_default="0"),
        sa.Column("weekly_correct", sa.Integer, nullable=False, server_default="0"),
        sa.Column("week_start", sa.Date),
        sa.Column("total_solved", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("total_correct", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("version", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.create_table(
        "outbox_dead_letters",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("aggregate_type", sa.Text, nullable=False),
        sa.Column("aggregate_id", sa.Text, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=False),
        sa.Column(
            "dead_lettered_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW
        ),
    )
    # The relay asks "is an earlier event of this aggregate still pending?" for every claim.
    op.create_index(
        "ix_outbox_events_aggregate",
        "outbox_events",
        ["aggregate_type", "aggregate_id", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_events_aggregate", table_name="outbox_events")
    for table in ("outbox_dead_letters", "learn_stats", "learning_days", "learning_records"):
        op.drop_table(table)
