"""Join the four branches that grew from 0001 into one linear history.

0002-0005 each revised 0001, so `alembic upgrade head` failed with "Multiple head revisions"
and the order the branches applied in was undefined. They touch disjoint tables, so a merge
point is all it takes; a database already at the four old heads moves to this one with no DDL.
Every later revision revises this one.
"""

from collections.abc import Sequence

revision: str = "0006"
down_revision: str | Sequence[str] | None = ("0002", "0003", "0004", "0005")


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
