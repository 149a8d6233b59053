"""One declared schedule: what starts which workflow when, and with which policies."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any


@dataclass(frozen=True)
class JobSchedule:
    """Exactly one of `cron` (in SCHEDULE_TIMEZONE) and `every` is set.

    Runs never overlap (a tick while the previous run is still going is skipped), and every run
    is bounded by `execution_timeout`, so a stuck run cannot block its schedule for ever.
    `catchup_window`: how late a missed tick (Temporal down) may still run; long for daily and
    weekly jobs, short for frequent ones whose next tick comes soon anyway.
    """

    schedule_id: str
    workflow: str
    arg: Any
    description: str
    execution_timeout: timedelta
    catchup_window: timedelta
    cron: str | None = None
    every: timedelta | None = None

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every is None):
            raise ValueError(f"schedule {self.schedule_id!r}: set exactly one of cron= and every=")
