"""The container deployment for real (`make test-containers`): the image built, the project's
own docker-compose.yml up with podman (upstream images swapped for local stand-ins), and what
an operator relies on checked on the running stack. The tests run in file order on one stack;
the last one stops it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, TypeVar

import httpx
import pytest
import yaml
from temporalio.api.enums.v1 import IndexedValueType, TaskQueueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowExecutionStatus

from learning_platform.core.settings import Settings
from learning_platform.scheduling.declarations import declared_schedules
from tests.containers.stack import ROOT, Stack
from tests.sse_helpers import open_stream

pytestmark = [pytest.mark.containers, pytest.mark.timeout(1800)]

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
ONE_SHOTS = ("temporal-schema", "temporal-setup", "migrate", "schedules")
# Services an `up` starts here: temporal-ui has no stand-in (the dev server serves the UI).
LONG_RUNNING = ("postgres", "temporal-postgres", "temporal", "worker", "api", "prometheus")
TASK_QUEUE = "learning-jobs"
T = TypeVar("T")


def eventually(check: Callable[[], T], within: float, what: str) -> T:
    """check() until it returns without AssertionError, polling; the last failure otherwise."""
    deadline = time.monotonic() + within
    while True:
        try:
            return check()
        except AssertionError as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {within:g} s: {exc}") from exc
        time.sleep(0.5)


def started_at(state: dict[str, Any], key: str) -> datetime:
    return datetime.fromisoformat(state[key][:26].rstrip("Z"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack.create(tmp_path_factory.mktemp("stack"))
    started = time.monotonic()
    try:
        stack.build()
        built = time.monotonic()
        stack.up()
        stack.log.append(f"images built in {built - started:.0f} s")
        stack.log.append(f"stack up in {time.monotonic() - built:.0f} s")
        yield stack
    finally:
        if any(stack.leftovers().values()):
            for name in stack.containers():
                print(f"--- {name}\n{stack.logs(name)[-2000:]}")
        stack.remove_everything()
        print("\n".join(["container stack timings:", *stack.log]))


@pytest.fixture(scope="module")
async def temporal(stack: Stack) -> Client:
    return await Client.connect(f"127.0.0.1:{stack.ports['TEMPORAL_HOST_PORT']}")


def test_one_shots_ran_once_each_and_in_order(stack: Stack) -> None:
    states = {}
    for service in ONE_SHOTS:
        names = stack.containers(service)
        assert len(names) == 1, (service, names)
        state = eventually(lambda name=names[0]: finished(stack, name), 240, f"{service} to finish")
        assert state["ExitCode"] == 0, (service, stack.logs(names[0])[-2000:])
        assert stack.inspect(names[0])["RestartCount"] == 0, service
        states[service] = state

    # Each waited for the one before it by itself: the store, then the server and namespace,
    # then the schedules in that namespace.
    assert "temporal schema ready" in stack.logs(stack.containers("temporal-schema")[0])
    finish = [started_at(states[s], "FinishedAt") for s in ONE_SHOTS if s != "migrate"]
    assert finish == sorted(finish), dict(zip(ONE_SHOTS, finish, strict=False))
    setup_log = stack.logs(stack.containers("temporal-setup")[0])
    assert "namespace default ready" in setup_log
    migrate_log = stack.logs(stack.containers("migrate")[0])
    assert "applied 0001:" in migrate_log
    schedules_log = stack.logs(stack.containers("schedules")[0])
    assert schedules_log.count(" created") == len(declared_schedules(Settings())), schedules_log


def finished(stack: Stack, name: str) -> dict[str, Any]:
    state: dict[str, Any] = stack.inspect(name)["State"]
    assert state["Status"] == "exited", state["Status"]
    return state


async def test_namespace_has_the_search_attributes_the_workflows_set(temporal: Client) -> None:
    listed = await temporal.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace="default")
    )
    assert listed.custom_attributes["SessionId"] == IndexedValueType.INDEXED_VALUE_TYPE_INT


def test_every_long_running_service_is_up_and_passes_its_healthcheck(stack: Stack) -> None:
    # No systemd here, so podman runs no healthcheck by itself: run each one as podman would.
    for service in LONG_RUNNING:
        names = stack.containers(service, every=False)
        assert names, f"{service} is not running"
        for name in names:
            assert stack.inspect(name)["Config"]["Healthcheck"]["Test"], name
            eventually(
                lambda name=name: stack.podman("healthcheck", "run", name),
                120,
                f"{name} healthcheck to pass",
            )
    assert len(stack.containers("worker", every=False)) == 2


async def test_both_worker_replicas_poll_both_task_queues(stack: Stack, temporal: Client) -> None:
    hostnames = {stack.inspect(name)["Config"]["Hostname"] for name in stack.containers("worker")}
    assert len(hostnames) == 2
    for queue, kind in (
        (TASK_QUEUE, TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW),
        (f"{TASK_QUEUE}-ai", TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY),
    ):
        deadline = time.monotonic() + 90
        while True:
            described = await temporal.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace="default", task_queue=TaskQueue(name=queue), task_queue_type=kind
                )
            )
            polling = {poller.identity.split("@", 1)[1] for poller in described.pollers}
            if polling >= hostnames or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        assert polling >= hostnames, (queue, polling, hostnames)


def test_api_answers_healthy_on_its_published_port(stack: Stack) -> None:
    answer = httpx.get(f"{stack.url('API_HOST_PORT')}/healthz", timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["database"] == "ok"


async def test_triggered_job_completes_and_its_notification_reaches_an_sse_client(
    stack: Stack, temporal: Client
) -> None:
    # A session waiting for AI processing whose only page the crawler must refuse (a private
    # address): the job fails it with a reason and notifies the user in the same transaction.
    user_id = int(
        stack.psql(
            "INSERT INTO users (email, display_name) VALUES ('c@example.com', 'C') RETURNING id"
        ).split()[0]
    )
    session_id = int(
        stack.psql(
            f"INSERT INTO sessions (user_id, status) VALUES ({user_id}, 'processing') RETURNING id"
        ).split()[0]
    )
    stack.psql(
        f"INSERT INTO page_visits (session_id, url) VALUES ({session_id}, 'http://10.0.0.1/')"
    )
    token = stack.exec("api", "learning-jobs", "api", "token", str(user_id)).strip()

    async with open_stream(stack.url("API_HOST_PORT"), token) as stream:
        stack.exec("worker", "learning-jobs", "schedules", "trigger", "ai-processing")
        event = await stream.next_event(within=120)

    assert event.event == "session.failed", event
    assert event.json()["payload"]["session_id"] == session_id, event.data
    sweep = [
        run async for run in temporal.list_workflows('TemporalScheduledById = "ai-processing"')
    ]
    assert sweep, "the trigger started no ai-processing run"
    outcome = await temporal.get_workflow_handle(sweep[0].id).describe()
    assert outcome.status == WorkflowExecutionStatus.COMPLETED
    session = await temporal.get_workflow_handle(f"session-{session_id}").describe()
    assert session.status == WorkflowExecutionStatus.COMPLETED
    assert stack.psql(f"SELECT status FROM sessions WHERE id = {session_id}").strip() == "failed"


def test_prometheus_scrapes_both_workers_the_api_and_temporal(stack: Stack) -> None:
    worker_ips = {
        next(iter(stack.inspect(name)["NetworkSettings"]["Networks"].values()))["IPAddress"]
        for name in stack.containers("worker")
    }

    def scraped() -> dict[str, list[str]]:
        targets = httpx.get(f"{stack.url('PROMETHEUS_HOST_PORT')}/api/v1/targets", timeout=10)
        up: dict[str, list[str]] = {}
        for target in targets.json()["data"]["activeTargets"]:
            if target["health"] == "up":
                up.setdefault(target["labels"]["job"], []).append(target["labels"]["instance"])
        assert {ip.split(":")[0] for ip in up.get("worker", [])} == worker_ips, up
        assert up.get("api") == ["api:8000"], up
        assert up.get("temporal") == ["temporal:9090"], up
        return up

    eventually(scraped, 120, "prometheus to scrape both workers, the api and temporal")


def test_stop_gives_each_worker_its_grace_then_nothing_is_left(stack: Stack) -> None:
    workers = stack.containers("worker")
    grace = int(SERVICES["worker"]["stop_grace_period"].rstrip("s"))
    started = time.monotonic()
    stack.compose("stop", timeout=grace * 3 + 60)
    stopping = time.monotonic() - started
    stack.log.append(f"stack stopped in {stopping:.0f} s")

    for name in workers:
        state = stack.inspect(name)["State"]
        log = stack.logs(name)
        # SIGTERM handled: running activities given WORKER_SHUTDOWN_GRACE_SECONDS, exit 0 —
        # not podman's SIGKILL (137) after a too short stop timeout.
        assert state["ExitCode"] == 0, (name, state["ExitCode"], log[-2000:])
        assert "shutting down: waiting for running activities" in log, name
        assert "worker stopped" in log, name
    assert all(stack.inspect(name)["State"]["Status"] == "exited" for name in stack.containers()), (
        stack.podman("ps", "-a", "--format", "{{.Names}} {{.Status}}")
    )

    stack.compose("down", "-v", timeout=120)
    assert stack.leftovers() == {"containers": [], "pods": [], "networks": [], "volumes": []}
