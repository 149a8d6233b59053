"""Staged questions of a generation attempt (QuestionGeneration since patch
`question-generation-ids-only`).

The activity that generates an attempt's questions stores them here, one row per attempt; the
activity that completes the attempt moves them into `questions` in the transaction that
completes the set and notifies its owner. Only ids and counts cross the workflow's history.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"


def upgrade() -> None:
    op.create_table(
        "question_drafts",
        sa.Column(
            "question_set_id",
            sa.BigInteger,
            sa.ForeignKey("question_sets.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("attempt", sa.Integer, primary_key=True),
        sa.Column("questions", JSONB, nullable=False),
        sa.Column("generator", sa.Text, nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
    )


def downgrade() -> None:
    op.drop_table("question_drafts")
