"""The container deployment for real (`make test-containers`): the image built, the project's
own docker-compose.yml up with podman (upstream images swapped for local stand-ins), and what
an operator relies on checked on the running stack. The tests run in file order on one stack;
the last one stops it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import httpx
import pytest
import yaml
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads
from temporalio.api.enums.v1 import IndexedValueType, TaskQueueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowExecutionStatus

from learning_platform.core.settings import Settings
from learning_platform.scheduling.declarations import declared_schedules
from learning_platform.temporal.payload_codec import ENCODING, KEY_ID_METADATA
from tests.containers.stack import ROOT, Stack
from tests.history_payloads import codec_payloads, payloads_in
from tests.sse_helpers import Event, open_stream

pytestmark = [pytest.mark.containers, pytest.mark.timeout(1800)]

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
ONE_SHOTS = ("temporal-schema", "temporal-setup", "migrate", "schedules")
# Services an `up` starts here: temporal-ui has no stand-in (the dev server serves the UI).
LONG_RUNNING = (
    "postgres", "temporal-postgres", "temporal", "worker", "api", "codec-server", "prometheus",
)  # fmt: skip
TASK_QUEUE = "learning-jobs"
PRIVATE_URL = "http://10.0.0.1/"
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
        # The image has a BUILD_ID, so its workers take work once their version is current.
        eventually(stack.make_build_current, 240, "the workers' build to become current")
        stack.log.append(f"workers' build current {time.monotonic() - built:.0f} s after up")
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
        restarts = stack.inspect(names[0])["RestartCount"]
        assert restarts == 0, (service, restarts, stack.logs(names[0])[-3000:])
        states[service] = state

    # Each waited by itself for what it needs (podman-compose skips the health conditions
    # here): the server for its store, so temporal-setup and schedules end after the store;
    # the workers for the search attributes temporal-setup registers. (`schedules` needs only
    # the namespace, which the dev-server stand-in creates itself: it may end before
    # temporal-setup has registered SessionId.)
    assert "temporal schema ready" in stack.logs(stack.containers("temporal-schema")[0])
    store_ready = started_at(states["temporal-schema"], "FinishedAt")
    for service in ("temporal-setup", "schedules"):
        assert started_at(states[service], "FinishedAt") > store_ready, (service, states)
    attributes_ready = started_at(states["temporal-setup"], "FinishedAt")
    for name in stack.containers("worker"):
        started = eventually(lambda name=name: worker_started_at(stack, name), 120, name)
        assert started > attributes_ready, (name, started, attributes_ready)
    setup_log = stack.logs(stack.containers("temporal-setup")[0])
    assert "namespace default ready" in setup_log
    migrate_log = stack.logs(stack.containers("migrate")[0])
    assert "applied 0001:" in migrate_log
    schedules_log = stack.logs(stack.containers("schedules")[0])
    assert schedules_log.count(" created") == len(declared_schedules(Settings())), schedules_log


def worker_started_at(stack: Stack, name: str) -> datetime:
    for line in stack.logs(name).splitlines():
        if '"msg": "worker started"' in line:
            return datetime.fromisoformat(json.loads(line)["ts"]).replace(tzinfo=None)
    raise AssertionError(f"{name} has not logged 'worker started'")


def finished(stack: Stack, name: str) -> dict[str, Any]:
    state: dict[str, Any] = stack.inspect(name)["State"]
    assert state["Status"] == "exited", state["Status"]
    return state


async def test_namespace_has_the_search_attributes_the_workflows_set(temporal: Client) -> None:
    listed = await temporal.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace="default")
    )
    assert listed.custom_attributes["SessionId"] == IndexedValueType.INDEXED_VALUE_TYPE_INT


def test_every_long_running_service_is_up_unrestarted_and_passes_its_healthcheck(
    stack: Stack,
) -> None:
    # No systemd here, so podman runs no healthcheck by itself: run each one as podman would.
    for service in LONG_RUNNING:
        names = stack.containers(service, every=False)
        assert names, f"{service} is not running"
        for name in names:
            assert stack.inspect(name)["Config"]["Healthcheck"]["Test"], name
            # Each waited for what it needs instead of exiting to be restarted.
            restarts = stack.inspect(name)["RestartCount"]
            assert restarts == 0, (name, restarts, stack.logs(name)[-3000:])
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


@dataclass
class TriggeredJob:
    session_id: int
    event: Event


@pytest.fixture(scope="module")
async def triggered_job(stack: Stack) -> AsyncIterator[TriggeredJob]:
    """A session waiting for AI processing whose only page the crawler must refuse (a private
    address), and an SSE client of the API container connected while ai-processing is
    triggered: the job fails the session with a reason and notifies the user in the same
    transaction. The event is whatever the stream gave within two minutes (None: nothing)."""
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
    stack.psql(f"INSERT INTO page_visits (session_id, url) VALUES ({session_id}, '{PRIVATE_URL}')")
    token = stack.exec("api", "learning-jobs", "api", "token", str(user_id)).strip()

    async with open_stream(stack.url("API_HOST_PORT"), token) as stream:
        stack.exec("worker", "learning-jobs", "schedules", "trigger", "ai-processing")
        event = await stream.next_event(within=120)
    yield TriggeredJob(session_id=session_id, event=event)


async def test_triggered_job_completes_and_its_notification_reaches_an_sse_client(
    stack: Stack, temporal: Client, triggered_job: TriggeredJob
) -> None:
    event, session_id = triggered_job.event, triggered_job.session_id
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


async def test_temporal_stores_only_encrypted_payloads_with_the_stacks_key(
    stack: Stack, temporal: Client, triggered_job: TriggeredJob
) -> None:
    # The client here has no codec: histories and schedules as the server holds them.
    history = await temporal.get_workflow_handle(
        f"session-{triggered_job.session_id}"
    ).fetch_history()
    payloads = codec_payloads(history)
    schedule = await temporal.get_schedule_handle("ai-processing").describe()
    scheduled = list(payloads_in(schedule.raw_description.schedule.action, search_attributes=False))

    assert len(payloads) >= 4, payloads  # input, result, activities' arguments and results
    assert scheduled, "the schedule's action holds no payload"
    for payload in [*payloads, *scheduled]:
        assert payload.metadata["encoding"] == ENCODING, payload.metadata
        assert payload.metadata[KEY_ID_METADATA] == stack.codec_key_id.encode()
    stored = b"".join(event.SerializeToString() for event in history.events)
    assert PRIVATE_URL.encode() not in stored and b"10.0.0.1" not in stored


async def test_the_codec_server_decodes_for_the_operator_only(
    stack: Stack, temporal: Client, triggered_job: TriggeredJob
) -> None:
    history = await temporal.get_workflow_handle(
        f"session-{triggered_job.session_id}"
    ).fetch_history()
    encrypted = codec_payloads(history)
    assert encrypted and {p.metadata["encoding"] for p in encrypted} == {ENCODING}
    body = json_format.MessageToJson(Payloads(payloads=encrypted))
    decode = f"{stack.url('CODEC_SERVER_HOST_PORT')}/decode"
    headers = {"Content-Type": "application/json", "X-Namespace": "default"}
    bearer = {"Authorization": f"Bearer {stack.env['CODEC_SERVER_TOKEN']}"}

    async with httpx.AsyncClient(timeout=10) as http:
        anonymous = await http.post(decode, content=body, headers=headers)
        wrong = await http.post(
            decode, content=body, headers={**headers, "Authorization": "Bearer nope"}
        )
        operator = await http.post(decode, content=body, headers={**headers, **bearer})

    assert (anonymous.status_code, wrong.status_code) == (401, 401), anonymous.text
    assert operator.status_code == 200, operator.text
    decoded = json_format.Parse(operator.text, Payloads()).payloads
    assert {p.metadata["encoding"] for p in decoded} == {b"json/plain"}
    values = [json.loads(p.data) for p in decoded]
    assert {"session_id": triggered_job.session_id} in values, values
    assert any(isinstance(v, dict) and v.get("outcome") == "failed" for v in values), values


def test_only_the_ui_may_call_the_codec_server_from_a_browser_and_the_ui_is_wired_to_it(
    stack: Stack,
) -> None:
    decode = f"{stack.url('CODEC_SERVER_HOST_PORT')}/decode"
    ui_origin = f"http://localhost:{stack.ports['TEMPORAL_UI_HOST_PORT']}"

    def preflight(origin: str) -> httpx.Response:
        return httpx.options(
            decode,
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
            },
            timeout=10,
        )

    ui, other = preflight(ui_origin), preflight("http://evil.example")
    assert ui.status_code == 200, ui.text
    assert ui.headers["access-control-allow-origin"] == ui_origin
    assert ui.headers["access-control-allow-credentials"] == "true"
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers
    # The UI (the dev server's here, temporal-ui upstream) sends payloads to that endpoint.
    settings = httpx.get(f"{stack.url('TEMPORAL_UI_HOST_PORT')}/api/v1/settings", timeout=10)
    codec = settings.json()["Codec"]
    assert codec["Endpoint"] == f"http://localhost:{stack.ports['CODEC_SERVER_HOST_PORT']}", codec


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
