"""The declared schedules: every job family's `schedules(settings)`, in one list.

A job's schedule is declared next to its workflow's input type, in its family's
`learning_platform/jobs/<family>/contracts.py`; a new family adds its `schedules` here.
"""

from __future__ import annotations

from learning_platform.core.settings import Settings
from learning_platform.jobs.ai_processing import contracts as ai_processing
from learning_platform.jobs.browsing_sessions import contracts as browsing_sessions
from learning_platform.jobs.contracts import JobSchedule
from learning_platform.jobs.learn_stats import contracts as learn_stats
from learning_platform.jobs.outbox_relay import contracts as outbox_relay
from learning_platform.jobs.question_sets import contracts as question_sets
from learning_platform.jobs.retention import contracts as retention

FAMILIES = (browsing_sessions, question_sets, outbox_relay, learn_stats, ai_processing, retention)


def declared_schedules(settings: Settings) -> list[JobSchedule]:
    return [schedule for family in FAMILIES for schedule in family.schedules(settings)]
