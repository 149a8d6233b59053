"""The retention job's index on notifications; trace context on outbox events and notifications.

The daily `retention` job deletes notifications older than NOTIFICATION_RETENTION_DAYS,
walking (created_at, id) from the oldest row to the cutoff; without the index every batch
would scan the table.

`outbox_events.trace_context` holds the W3C trace context of the code that wrote the event,
so the relay's delivery continues that trace; `notifications.trace_id` names the trace of the
run that wrote the notification. Both stay NULL while tracing is off.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"


def upgrade() -> None:
    op.create_index("ix_notifications_created_at_id", "notifications", ["created_at", "id"])
    op.add_column("outbox_events", sa.Column("trace_context", JSONB, nullable=True))
    op.add_column("notifications", sa.Column("trace_id", sa.Text, nullable=True))


def downgrade() -> None:
    op.drop_column("notifications", "trace_id")
    op.drop_column("outbox_events", "trace_context")
    op.drop_index("ix_notifications_created_at_id", table_name="notifications")
