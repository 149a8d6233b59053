"""The retention job's index on notifications.

The daily `retention` job deletes notifications older than NOTIFICATION_RETENTION_DAYS,
walking (created_at, id) from the oldest row to the cutoff; without the index every batch
would scan the table.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_notifications_created_at_id", "notifications", ["created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_notifications_created_at_id", table_name="notifications")
