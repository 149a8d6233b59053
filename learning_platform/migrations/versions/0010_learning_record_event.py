"""A learning record names its own `learning.recorded` event; the per-record `stats_applied`
flag goes.

The handler applies a record only for the event the record names, in the transaction that
deletes that event, so a record is counted exactly when its event has left the outbox (and
the dead letters), and duplicate events (which the record does not name) count nothing. The
handler then writes no `learning_records` row version per event; the weekly recount excludes
the records whose own event is still pending. The covering index carries `event_id` for that
recount instead of `stats_applied`.

Existing rows: a record not yet applied is linked to the lowest pending or dead-lettered event
announcing it; an applied record names none. Downgrade recomputes the flag the same way back.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"

INDEX = "ix_learning_records_user_id_solved_at"

# learning.recorded events still to be delivered (in the outbox or dead-lettered), with the
# record their payload names (as text: a malformed payload matches no record, never fails).
_ANNOUNCED = """
    SELECT id, payload ->> 'learning_record_id' AS record
      FROM outbox_events WHERE event_type = 'learning.recorded'
    UNION ALL
    SELECT id, payload ->> 'learning_record_id'
      FROM outbox_dead_letters WHERE event_type = 'learning.recorded'
"""


def upgrade() -> None:
    op.add_column("learning_records", sa.Column("event_id", sa.BigInteger))
    op.execute(
        f"""
        UPDATE learning_records r SET event_id = e.id
          FROM (SELECT record, min(id) AS id FROM ({_ANNOUNCED}) a GROUP BY record) e
         WHERE CAST(r.id AS text) = e.record AND NOT r.stats_applied
        """
    )
    op.drop_index(INDEX, table_name="learning_records")
    op.drop_column("learning_records", "stats_applied")
    op.create_index(
        INDEX,
        "learning_records",
        ["user_id", "solved_at"],
        postgresql_include=["correct", "event_id"],
    )


def downgrade() -> None:
    op.add_column(
        "learning_records",
        sa.Column("stats_applied", sa.Boolean, nullable=False, server_default=sa.true()),
    )
    op.execute(
        f"""
        UPDATE learning_records r SET stats_applied = false
         WHERE r.event_id IN (SELECT id FROM ({_ANNOUNCED}) a)
        """
    )
    op.alter_column("learning_records", "stats_applied", server_default=sa.false())
    op.drop_index(INDEX, table_name="learning_records")
    op.drop_column("learning_records", "event_id")
    op.create_index(
        INDEX,
        "learning_records",
        ["user_id", "solved_at"],
        postgresql_include=["correct", "stats_applied"],
    )
