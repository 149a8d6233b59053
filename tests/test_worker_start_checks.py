"""A worker that cannot work says why in one log line at start and exits, rather than
failing every run later: real `worker.py` processes against the test servers, each with one
thing wrong."""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from google.protobuf.duration_pb2 import Duration
from sqlalchemy.engine import make_url
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError

from learning_platform.core.database import resolve_database_url
from learning_platform.core.settings import Settings
from tests.command_runs import PROJECT_ROOT, run_at_once
from tests.loopback import refused_ports
from tests.worker_process import WorkerProcess, _pump, running_worker, worker_env

PASSWORD = "worker-db-password-2a9d"


async def register_namespace(client: Client, prefix: str) -> str:
    """A namespace registered on the test server after its start, so without `SessionId`."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    await client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=name, workflow_execution_retention_period=Duration(seconds=86400)
        )
    )
    async with asyncio.timeout(30):  # the frontend's namespace cache learns of it shortly
        while True:
            try:
                await client.workflow_service.describe_namespace(
                    DescribeNamespaceRequest(namespace=name)
                )
                break
            except RPCError:
                await asyncio.sleep(0.2)
    return name


@pytest.fixture
async def namespace_without_search_attributes(client: Client) -> str:
    return await register_namespace(client, "bare")


@pytest.fixture
async def namespace_with_session_id_as_keyword(client: Client) -> str:
    name = await register_namespace(client, "keyword")
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=name,
            search_attributes={"SessionId": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD},
        )
    )
    return name


@pytest.fixture
def refused() -> Iterator[list[int]]:
    with refused_ports(2) as ports:
        yield ports


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_a_worker_that_cannot_work_says_why_in_one_line_and_exits(
    settings: Settings,
    namespace_without_search_attributes: str,
    namespace_with_session_id_as_keyword: str,
    taken_port: int,
    refused: list[int],
) -> None:
    temporal_port, database_port = refused
    broken = {
        "database unreachable": (
            {"DATABASE_URL": f"postgresql://app:{PASSWORD}@127.0.0.1:{database_port}/app"},
            1,
            f"PostgreSQL at 127.0.0.1:{database_port}/app is unreachable: Connection refused; "
            "check DATABASE_URL",
        ),
        "Temporal unreachable": (
            {"TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}"},
            1,
            f"Temporal at 127.0.0.1:{temporal_port} is unreachable (Connection refused); "
            "check TEMPORAL_ADDRESS",
        ),
        "namespace missing": (
            {"TEMPORAL_NAMESPACE": "no-such-namespace"},
            2,
            "Temporal namespace 'no-such-namespace' does not exist at ",
        ),
        "search attribute missing": (
            {"TEMPORAL_NAMESPACE": namespace_without_search_attributes},
            2,
            f"Temporal namespace {namespace_without_search_attributes!r} lacks the search "
            "attribute SessionId (Int) that the session workflows set; register it: "
            f"temporal operator search-attribute create --namespace "
            f"{namespace_without_search_attributes} --name SessionId --type Int",
        ),
        "search attribute of another type": (
            {"TEMPORAL_NAMESPACE": namespace_with_session_id_as_keyword},
            2,
            f"Temporal namespace {namespace_with_session_id_as_keyword!r} has the search "
            "attribute SessionId as Keyword, but the session workflows set it as Int",
        ),
        "metrics port taken": (
            {"METRICS_PORT": str(taken_port)},
            2,
            f"METRICS_PORT {taken_port} cannot be served (Address already in use)",
        ),
    }
    ports = {"METRICS_PORT": "0"}
    results = run_at_once(
        {
            name: (["worker.py"], worker_env(settings, **{**ports, **overrides}))
            for name, (overrides, _, _) in broken.items()
        }
    )

    for name, (_, status, message) in broken.items():
        result = results[name]
        assert result.returncode == status, (name, result.stderr)
        [line] = result.error_lines
        logged = json.loads(line)
        assert (logged["level"], logged["exit_code"]) == ("error", status), (name, logged)
        assert logged["msg"].startswith(message), (name, logged["msg"])
        assert PASSWORD not in result.output


def test_a_working_worker_logs_no_secret(settings: Settings) -> None:
    secrets = {
        "OPENAI_API_KEY": "sk-worker-secret-61d0",
        "S3_SECRET_ACCESS_KEY": "s3-worker-secret-0f3b",
        "JWT_SECRET": "jwt-worker-secret-4c2e-long-enough-for-hs256",
    }
    # The test server trusts local connections, so a password in the URL is accepted.
    url = make_url(resolve_database_url(settings)).set(username="postgres", password=PASSWORD)

    with running_worker(
        settings, DATABASE_URL=url.render_as_string(hide_password=False), **secrets
    ) as worker:
        worker.process.terminate()
        worker.process.wait(timeout=30)
        worker.wait_for_log("worker stopped")

    logged = json.dumps(worker.seen)
    assert "worker started" in logged
    assert not [s for s in [PASSWORD, *secrets.values()] if s in logged], logged


# --- waiting, as compose runs it (--wait-seconds): for what the stack's setup may still do ----

COMPOSE_WORKER_ARGV: list[str] = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())[
    "services"
]["worker"]["command"]


def waiting_worker_argv(wait_seconds: float | None = None) -> list[str]:
    """compose's worker command as `python worker.py ...`, its wait changed if asked."""
    assert COMPOSE_WORKER_ARGV[:2] == ["learning-jobs", "worker"]
    argv = ["worker.py", *COMPOSE_WORKER_ARGV[2:]]
    if wait_seconds is not None:
        argv[argv.index("--wait-seconds") + 1] = f"{wait_seconds:g}"
    return argv


def started_worker(argv: list[str], env: dict[str, str]) -> WorkerProcess:
    process = subprocess.Popen(
        [sys.executable, *argv], cwd=PROJECT_ROOT, env=env, text=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    worker = WorkerProcess(process, 0)
    threading.Thread(target=_pump, args=(process.stderr, worker.lines), daemon=True).start()
    return worker


def first_log_starting(worker: WorkerProcess, prefix: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in worker.seen if str(e.get("msg", "")).startswith(prefix)]
        if found:
            return found[0]
        left = deadline - time.monotonic()
        ended = worker.process.poll() is not None and worker.lines.empty()
        if left <= 0 or ended:
            raise TimeoutError(f"no log starting {prefix!r}: {worker.seen}")
        with contextlib.suppress(queue.Empty):
            worker.seen.append(worker.lines.get(timeout=min(left, 1)))


async def test_a_waiting_worker_starts_once_its_search_attribute_is_registered(
    client: Client, settings: Settings, namespace_without_search_attributes: str
) -> None:
    namespace = namespace_without_search_attributes
    env = worker_env(settings, TEMPORAL_NAMESPACE=namespace, METRICS_PORT="0")
    worker = started_worker(waiting_worker_argv(), env)
    try:
        waiting = await asyncio.to_thread(
            first_log_starting, worker, f"waiting for namespace {namespace!r}"
        )
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=namespace,
                search_attributes={"SessionId": IndexedValueType.INDEXED_VALUE_TYPE_INT},
            )
        )
        started = await asyncio.to_thread(worker.wait_for_log, "worker started", 60)
        worker.process.terminate()
        exit_code = await asyncio.to_thread(worker.process.wait, 30)
    finally:
        if worker.process.poll() is None:
            worker.process.kill()

    assert waiting["level"] == "warning"
    assert "lacks the search attribute SessionId (Int)" in waiting["msg"]
    assert started["task_queues"]
    assert exit_code == 0


def test_a_waiting_worker_gives_up_in_bounded_time_saying_what_it_waited_for(
    settings: Settings,
    namespace_without_search_attributes: str,
    namespace_with_session_id_as_keyword: str,
    refused: list[int],
) -> None:
    temporal_port, database_port = refused
    broken = {
        "search attribute never registered": (
            {"TEMPORAL_NAMESPACE": namespace_without_search_attributes},
            2,
            f"namespace {namespace_without_search_attributes!r} with its search attributes "
            "was not ready within 1.5 s: Temporal namespace "
            f"{namespace_without_search_attributes!r} lacks the search attribute SessionId",
        ),
        "Temporal never answers": (
            {"TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}"},
            1,
            f"Temporal at 127.0.0.1:{temporal_port} (namespace 'default') was not ready within "
            f"1.5 s: Temporal at 127.0.0.1:{temporal_port} is unreachable (Connection refused)",
        ),
        "database never answers": (
            {"DATABASE_URL": f"postgresql://app:{PASSWORD}@127.0.0.1:{database_port}/app"},
            1,
            f"the database was not ready within 1.5 s: PostgreSQL at 127.0.0.1:{database_port}"
            "/app is unreachable: Connection refused",
        ),
    }
    # Waiting cannot fix this one: it ends at once, whatever the wait.
    wrong_type = (
        {"TEMPORAL_NAMESPACE": namespace_with_session_id_as_keyword},
        2,
        f"Temporal namespace {namespace_with_session_id_as_keyword!r} has the search "
        "attribute SessionId as Keyword",
    )
    commands = {
        name: (waiting_worker_argv(1.5), worker_env(settings, METRICS_PORT="0", **overrides))
        for name, (overrides, _, _) in broken.items()
    }
    commands["search attribute of another type"] = (
        waiting_worker_argv(),
        worker_env(settings, METRICS_PORT="0", **wrong_type[0]),
    )
    started = time.monotonic()
    results = run_at_once(commands)

    assert time.monotonic() - started < 60  # not the 180 s of compose's wait
    for name, (_, status, message) in {
        **broken,
        "search attribute of another type": wrong_type,
    }.items():
        result = results[name]
        assert result.returncode == status, (name, result.stderr)
        *waited, last = [json.loads(line) for line in result.error_lines]
        assert (last["level"], last["exit_code"]) == ("error", status), (name, last)
        assert last["msg"].startswith(message), (name, last["msg"])
        assert all(entry["msg"].startswith("waiting for ") for entry in waited), (name, waited)
        assert PASSWORD not in result.output
    assert not results["search attribute of another type"].error_lines[:-1]


def test_a_waiting_worker_stops_at_sigterm_without_waiting_out_its_wait(
    settings: Settings, refused: list[int]
) -> None:
    env = worker_env(settings, TEMPORAL_ADDRESS=f"127.0.0.1:{refused[0]}", METRICS_PORT="0")
    worker = started_worker(waiting_worker_argv(), env)
    try:
        first_log_starting(worker, "waiting for Temporal at")
        worker.process.send_signal(signal.SIGTERM)
        exit_code = worker.process.wait(timeout=15)
        worker.wait_for_log("worker stopped before it started")
    finally:
        if worker.process.poll() is None:
            worker.process.kill()

    assert exit_code == 0


def test_the_worker_runs_on_uvloop_where_it_is_installed() -> None:
    """The loop `worker.py` runs on (uvloop: 7 % less CPU per AI session, docs/benchmarks.md)."""
    import uvloop

    from worker import run_event_loop

    loops: list[asyncio.AbstractEventLoop] = []

    async def note_the_loop() -> None:
        loops.append(asyncio.get_running_loop())

    run_event_loop(note_the_loop())
    assert len(loops) == 1
    assert isinstance(loops[0], uvloop.Loop)
