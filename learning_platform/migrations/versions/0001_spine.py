"""Users, browsing sessions, page visits, notifications, the outbox and job gauges.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0001"
down_revision: str | Sequence[str] | None = None

NOW = sa.text("now()")

NOTIFY_TRIGGERS = (
    # Identity values are drawn at insert, not at commit: a transaction holding id 9 could
    # commit after one holding id 10, and an SSE stream that already sent 10 (or a client
    # resuming with Last-Event-ID 10) would never see 9. A per-user lock held from before the
    # id is drawn until commit makes one user's ids commit in id order, for every writer, so
    # "ids above the last one sent" is exactly what a stream owes (see api/streams.py). Bulk
    # writers insert ORDER BY user_id, so two of them take the users' locks in the same order.
    """
    CREATE FUNCTION notifications_take_user_turn() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM pg_advisory_xact_lock(hashtextextended('notifications:user:' || NEW.user_id, 0));
      NEW.id := nextval(pg_get_serial_sequence('notifications', 'id'));
      RETURN NEW;
    END $$
    """,
    """
    CREATE TRIGGER notifications_user_turn BEFORE INSERT ON notifications
      FOR EACH ROW EXECUTE FUNCTION notifications_take_user_turn()
    """,
    """
    CREATE FUNCTION notify_notification_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM pg_notify('notifications',
                        json_build_object('id', NEW.id, 'user_id', NEW.user_id)::text);
      RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER notifications_notify AFTER INSERT ON notifications
      FOR EACH ROW EXECUTE FUNCTION notify_notification_inserted()
    """,
    # One wake-up per statement: a batch insert of events should not send a NOTIFY per row.
    """
    CREATE FUNCTION notify_outbox_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM pg_notify('outbox_events', '');
      RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER outbox_events_notify AFTER INSERT ON outbox_events
      FOR EACH STATEMENT EXECUTE FUNCTION notify_outbox_inserted()
    """,
)


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True)


def upgrade() -> None:
    op.create_table(
        "users",
        _id(),
        sa.Column("email", sa.Text, nullable=False, unique=True),
        sa.Column("display_name", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.create_table(
        "sessions",
        _id(),
        sa.Column(
            "user_id", sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("title", sa.Text),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("failure_reason", sa.Text),
        sa.CheckConstraint(
            "status IN ('recording', 'paused', 'processing', 'completed', 'failed')",
            name="status_known",
        ),
    )
    op.create_index("ix_sessions_status_updated_at_id", "sessions", ["status", "updated_at", "id"])
    op.create_index("ix_sessions_user_id", "sessions", ["user_id"])
    op.create_table(
        "page_visits",
        _id(),
        sa.Column(
            "session_id",
            sa.BigInteger,
            sa.ForeignKey("sessions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("title", sa.Text),
        sa.Column("visited_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.create_index("ix_page_visits_session_id", "page_visits", ["session_id"])
    op.create_table(
        "notifications",
        _id(),
        sa.Column(
            "user_id", sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("payload", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("dedupe_key", sa.Text, nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("read_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_notifications_user_id_id", "notifications", ["user_id", "id"])
    op.create_table(
        "outbox_events",
        _id(),
        sa.Column("aggregate_type", sa.Text, nullable=False),
        sa.Column("aggregate_id", sa.Text, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("payload", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
    )
    op.create_index("ix_outbox_events_available_at_id", "outbox_events", ["available_at", "id"])

    op.create_table(
        "job_gauges",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("measured_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )

    # NOTIFY is sent at commit, so listeners never see a notification that rolled back.
    for statement in NOTIFY_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS outbox_events_notify ON outbox_events")
    op.execute("DROP FUNCTION IF EXISTS notify_outbox_inserted()")
    op.execute("DROP TRIGGER IF EXISTS notifications_user_turn ON notifications")
    op.execute("DROP FUNCTION IF EXISTS notifications_take_user_turn()")
    op.execute("DROP TRIGGER IF EXISTS notifications_notify ON notifications")
    op.execute("DROP FUNCTION IF EXISTS notify_notification_inserted()")
    for table in (
        "job_gauges",
        "outbox_events",
        "notifications",
        "page_visits",
        "sessions",
        "users",
    ):
        op.drop_table(table)
