"""Servers the fault scenarios own, so they can stop and restart them without disturbing the
default suite: an embedded PostgreSQL and a Temporal dev server on a SQLite file, both in
temporary directories and on free ports. They replace the default suite's `database_url` and
`temporal_env`, so `engine`, `client`, `settings`, `deps` and `worker` point at them.

Every scenario takes `fault_report`: it prints what was injected and verified (`pytest -s`)
and the scenario's row goes into the results table of docs/reliability.md.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from learning_platform.migrations import upgrade
from tests.codec_keys import encrypting_converter
from tests.faults.report import FaultReport, write_results
from tests.faults.servers import OwnPostgres, OwnTemporal
from tests.faults.world import terminate_running


@pytest.fixture(scope="session")
def own_postgres() -> Iterator[OwnPostgres]:
    server = OwnPostgres(Path(tempfile.mkdtemp(prefix="pg-faults-")))
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def database_url(own_postgres: OwnPostgres) -> str:
    upgrade(own_postgres.url)
    return own_postgres.url


@pytest.fixture(scope="session")
def own_temporal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnTemporal]:
    server = OwnTemporal(tmp_path_factory.mktemp("temporal"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
async def temporal_env(own_temporal: OwnTemporal) -> AsyncIterator[WorkflowEnvironment]:
    yield WorkflowEnvironment.from_client(
        await Client.connect(own_temporal.address, data_converter=encrypting_converter())
    )


@pytest.fixture
def fault_report(request: pytest.FixtureRequest) -> FaultReport:
    return FaultReport(request.node.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    fault_report = getattr(item, "funcargs", {}).get("fault_report")
    if isinstance(fault_report, FaultReport) and report.when == "call":
        fault_report.finish(report.outcome, str(report.longrepr or "")[-300:])


def pytest_sessionfinish(session: pytest.Session) -> None:
    write_results(FaultReport.finished, " ".join(session.config.invocation_params.args))


@pytest.fixture(autouse=True)
async def leave_temporal_clean(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Nothing a scenario started outlives it: running workflows (relay, sessions) are
    terminated and schedules deleted, so the next scenario starts from an empty server."""
    yield
    client = request.node.funcargs.get("client")
    if not isinstance(client, Client):
        return
    await terminate_running(client)
    async for listed in await client.list_schedules():
        await client.get_schedule_handle(listed.id).delete()
