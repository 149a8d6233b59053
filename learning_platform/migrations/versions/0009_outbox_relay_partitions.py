"""The relays' partition count: OUTBOX_RELAY_PARTITIONS relay workflows each claim the
aggregates whose hash falls in their partition; every claim reads the count from this one row,
so all relays change over at once when the watchdog writes a new one.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"


def upgrade() -> None:
    op.create_table(
        "outbox_relay_partitions",
        sa.Column("singleton", sa.Boolean, primary_key=True),
        sa.Column("partitions", sa.Integer, nullable=False),
        sa.CheckConstraint("singleton", name="one_row"),
        sa.CheckConstraint("partitions >= 1", name="positive"),
    )
    op.execute("INSERT INTO outbox_relay_partitions (singleton, partitions) VALUES (true, 1)")


def downgrade() -> None:
    op.drop_table("outbox_relay_partitions")
