"""Where a batch activity got to, committed with each batch (see job_checkpoints.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from learning_platform.models.base import Base


class JobCheckpoint(Base):
    __tablename__ = "job_checkpoints"

    # workflow id / run id / activity id: shared by every attempt of one activity.
    activity_key: Mapped[str] = mapped_column(Text, primary_key=True)
    total: Mapped[int] = mapped_column(BigInteger)
    position: Mapped[Any] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)
