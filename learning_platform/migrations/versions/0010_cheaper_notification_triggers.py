"""Cheaper notification triggers, same guarantee: the per-user turn without a catalog look-up
or a query per row, and one NOTIFY per user per statement instead of one per row.

What the triggers of 0001 guarantee is unchanged: the user's advisory lock is taken before the
id is drawn and held until commit, so one user's ids commit in id order; the NOTIFY is sent at
commit. What changes is their cost per row (docs/benchmarks.md, question-set-cleanup, issue 16):
- `pg_get_serial_sequence('notifications', 'id')` read the catalog for every row; the sequence
  is resolved here, once, and the function names it (a regclass constant, planned once per
  session);
- `PERFORM pg_advisory_xact_lock(...)` ran a query through SPI for every row; an assignment is
  evaluated as a simple expression;
- the row-level AFTER trigger sent a NOTIFY per row; a statement-level one sends one per user
  the statement wrote for, `{"id": highest, "user_id": user, "first_id": lowest}`. The user's
  ids in [first_id, id] are all this statement's (the user's lock is held from before the first
  was drawn until commit), so the API reads that range for the user (hub.py). A one-row insert
  sends what 0001 sent, plus `first_id` equal to `id`.

Deploy the API before this migration: an older API reads only `id` and would stream the highest
row of a multi-row insert without the rows below it. The API of this change reads both payloads.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"

TAKE_USER_TURN = """
    CREATE OR REPLACE FUNCTION notifications_take_user_turn() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE
      locked text;  -- pg_advisory_xact_lock returns void; assigning it avoids a PERFORM query
    BEGIN
      -- The lock before the id (see 0001): one user's ids commit in id order.
      locked := pg_advisory_xact_lock(hashtextextended('notifications:user:' || NEW.user_id, 0));
      NEW.id := nextval({sequence}::regclass);
      RETURN NEW;
    END $$
    """

NOTIFY_PER_USER = """
    CREATE OR REPLACE FUNCTION notify_notification_inserted() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM pg_notify('notifications',
                        json_build_object('id', max(id), 'user_id', user_id,
                                          'first_id', min(id))::text)
         FROM inserted
        GROUP BY user_id;
      RETURN NULL;
    END $$
    """

# Transition tables hold only the rows actually inserted (not those ON CONFLICT DO NOTHING
# skipped), so a statement that inserted nothing for a user sends nothing for them.
NOTIFY_TRIGGER = """
    CREATE TRIGGER notifications_notify AFTER INSERT ON notifications
      REFERENCING NEW TABLE AS inserted
      FOR EACH STATEMENT EXECUTE FUNCTION notify_notification_inserted()
    """

# 0001's functions and row trigger, restored by the downgrade.
OLD_TAKE_USER_TURN = """
    CREATE OR REPLACE FUNCTION notifications_take_user_turn() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM pg_advisory_xact_lock(hashtextextended('notifications:user:' || NEW.user_id, 0));
      NEW.id := nextval(pg_get_serial_sequence('notifications', 'id'));
      RETURN NEW;
    END $$
    """

OLD_NOTIFY_PER_ROW = """
    CREATE OR REPLACE FUNCTION notify_notification_inserted() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM pg_notify('notifications',
                        json_build_object('id', NEW.id, 'user_id', NEW.user_id)::text);
      RETURN NULL;
    END $$
    """

OLD_NOTIFY_TRIGGER = """
    CREATE TRIGGER notifications_notify AFTER INSERT ON notifications
      FOR EACH ROW EXECUTE FUNCTION notify_notification_inserted()
    """


def upgrade() -> None:
    # Schema-qualified and quoted, so the function does not depend on the caller's search_path.
    sequence = op.get_bind().scalar(
        sa.text("SELECT quote_literal(pg_get_serial_sequence('notifications', 'id'))")
    )
    op.execute(TAKE_USER_TURN.replace("{sequence}", str(sequence)))
    op.execute("DROP TRIGGER notifications_notify ON notifications")
    op.execute(NOTIFY_PER_USER)
    op.execute(NOTIFY_TRIGGER)


def downgrade() -> None:
    op.execute(OLD_TAKE_USER_TURN)
    op.execute("DROP TRIGGER notifications_notify ON notifications")
    op.execute(OLD_NOTIFY_PER_ROW)
    op.execute(OLD_NOTIFY_TRIGGER)
