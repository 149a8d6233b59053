"""Batch activities' checkpoints, committed with each batch."""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0001"

NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "job_checkpoints",
        sa.Column("activity_key", sa.Text, primary_key=True),
        sa.Column("total", sa.BigInteger, nullable=False),
        sa.Column("position", JSONB, nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
    )
    op.create_index("ix_job_checkpoints_updated_at", "job_checkpoints", ["updated_at"])


def downgrade() -> None:
    op.drop_table("job_checkpoints")
