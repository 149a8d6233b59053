"""The outbox relay: one workflow per partition of the aggregates (OUTBOX_RELAY_PARTITIONS),
each running long, heartbeating drain activities, and the `outbox-relay` watchdog job that
starts each one when it is not running."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from learning_platform.jobs.outbox_relay.contracts import (
    OUTBOX_RELAY_WORKFLOW,
    DrainOutboxParams,
    EnsureOutboxRelayInput,
    EnsureOutboxRelayResult,
    OutboxRelayActivities,
    OutboxRelayInput,
)
from workflows.job_run import job_run
from workflows.retry_policies import DATABASE_RETRY

# Histories from before partitions never saw a drain report `retired`; the patch marks those
# that end on it.
RETIRED_PARTITION_ENDS_RELAY = "retired-partition-ends-relay"


@workflow.defn(name=OUTBOX_RELAY_WORKFLOW)
class OutboxRelay:
    @workflow.run
    async def run(self, params: OutboxRelayInput) -> None:
        for _ in range(params.drains_per_run):
            drained = await workflow.execute_activity(
                OutboxRelayActivities.drain_outbox,
                DrainOutboxParams(run_seconds=params.drain_seconds, partition=params.partition),
                start_to_close_timeout=timedelta(seconds=params.drain_seconds + 120),
                # A crashed worker's drain is taken over this soon by another worker.
                heartbeat_timeout=timedelta(seconds=20),
                retry_policy=DATABASE_RETRY,
            )
            # Fewer partitions now: another relay delivers this one's aggregates; end here
            # (the watchdog starts this relay again if the count grows back).
            if drained.retired and workflow.patched(RETIRED_PARTITION_ENDS_RELAY):
                return
            if workflow.info().is_continue_as_new_suggested() or _newer_build_is_current():
                break
        # Versioned workers pin each run to its build; the next run starts on the current build.
        workflow.continue_as_new(
            params,
            initial_versioning_behavior=workflow.ContinueAsNewVersioningBehavior.AUTO_UPGRADE,
        )


def _newer_build_is_current() -> bool:
    """A deploy made another build current: continue as new on it after this drain, so the
    old build's workers drain within one drain period (upgrade on continue-as-new)."""
    return workflow.info().is_target_worker_deployment_version_changed()


@workflow.defn(name="EnsureOutboxRelay")
class EnsureOutboxRelay:
    @workflow.run
    async def run(self, params: EnsureOutboxRelayInput) -> EnsureOutboxRelayResult:
        async with job_run("outbox-relay") as run:
            started: EnsureOutboxRelayResult = await workflow.execute_activity(
                OutboxRelayActivities.ensure_outbox_relay,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
            run.counts.update(relay_run_id=started.run_id)
        return started
