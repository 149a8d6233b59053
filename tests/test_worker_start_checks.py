"""A worker that cannot work says why in one log line at start and exits, rather than
failing every run later: real `worker.py` processes against the test servers, each with one
thing wrong."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import Iterator

import pytest
from google.protobuf.duration_pb2 import Duration
from sqlalchemy.engine import make_url
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError

from learning_platform.core.database import resolve_database_url
from learning_platform.core.metrics import free_loopback_port
from learning_platform.core.settings import Settings
from tests.command_runs import run_at_once
from tests.worker_process import running_worker, worker_env

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
) -> None:
    temporal_port = free_loopback_port()
    database_port = free_loopback_port()
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
