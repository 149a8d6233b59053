"""Gauge values computed by a job once and exported by every worker's /metrics."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from learning_platform.models.base import Base


class JobGauge(Base):
    __tablename__ = "job_gauges"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    measured_at: Mapped[datetime] = mapped_column(server_default=func.now())
