"""What every scheduled job does around its work: its time reference, logs and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeKey

from learning_platform.jobs.contracts import RUN_MEMO_KEY

# Set by Temporal on every workflow a schedule starts (also for trigger and backfill).
SCHEDULED_START_TIME = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")

# Runs started before this patch recorded no memo; their histories replay without it.
RUN_MEMO_PATCH = "job-run-memo"
# The memo key under which a run leaves its outcome, duration and counts (`schedules.py status`
# and the run's page in the Temporal UI show it).


def scheduled_time(explicit: datetime | None) -> datetime:
    """The time this run reasons about: given explicitly, else the schedule's, else now.

    A late or caught-up run of a schedule thus computes what the on-time run would have.
    """
    if explicit is not None:
        return explicit
    from_schedule = workflow.info().typed_search_attributes.get(SCHEDULED_START_TIME)
    return from_schedule if from_schedule is not None else workflow.now()


@dataclass
class JobRun:
    job: str
    started: datetime
    counts: dict[str, Any] = field(default_factory=dict)


def run_details(job: str, outcome: str, duration_s: float, counts: dict[str, Any]) -> str:
    """One line for an operator: `cleanup-stale-sessions: success in 0.4 s · failed_sessions 3`."""
    counted = "".join(f" · {key} {value}" for key, value in counts.items())
    return f"{job}: {outcome} in {duration_s:.1f} s{counted}"


@asynccontextmanager
async def job_run(job: str) -> AsyncIterator[JobRun]:
    """Log `starting job` / `job completed` (or `job failed`) with the duration, count the run
    by outcome, and leave outcome, duration and counts in the run's memo. Workflow time is
    used, so replays log and measure nothing twice."""
    run = JobRun(job=job, started=workflow.now())
    workflow.logger.info("starting job", extra={"job": job})
    # Current details (the UI's User Metadata tab, `temporal workflow metadata`) are no
    # command: no patch needed, nothing for replay to compare.
    workflow.set_current_details(f"{job}: running")
    outcome = "failure"
    try:
        yield run
        outcome = "success"
    finally:
        duration = workflow.now() - run.started
        meter = workflow.metric_meter().with_additional_attributes({"job": job})
        meter.create_counter("learning_jobs_runs", "Job runs by outcome").add(
            1, {"outcome": outcome}
        )
        meter.create_histogram_timedelta(
            "learning_jobs_duration", "Job run duration", unit="duration"
        ).record(duration)
        if workflow.patched(RUN_MEMO_PATCH):
            workflow.upsert_memo(
                {
                    RUN_MEMO_KEY: {
                        "job": job,
                        "outcome": outcome,
                        "duration_s": duration.total_seconds(),
                        "counts": run.counts,
                    }
                }
            )
        workflow.set_current_details(
            run_details(job, outcome, duration.total_seconds(), run.counts)
        )
        message = "job completed" if outcome == "success" else "job failed"
        log = workflow.logger.info if outcome == "success" else workflow.logger.error
        log(message, extra={"job": job, "duration_s": duration.total_seconds(), **run.counts})
