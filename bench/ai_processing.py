"""ai-processing: SESSIONS sessions x PAGES pages through a real worker process.

The worker (`worker.py`, as deployed) reads every page from a loopback web server and asks a
loopback Chat Completions server that answers each request after LATENCY seconds; the AI task
queue runs CONCURRENCY activities at once. One sweep starts every session's workflow.

  ideal — total LLM latency / concurrency: (pages + 1 mind map) x sessions x LATENCY / CONCURRENCY
  wall  — from the sweep's start until no session is left processing
  RSS   — the worker process's peak resident memory (VmHWM)
  CPU   — the worker process's CPU time during the run (the machine's load average beside it)

    .venv/bin/python -m bench.ai_processing [--sessions 200] [--pages 10] [--latency 0.3]
                                            [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from bench.stack import database_url
from learning_platform.commands.process_exit import exits_without_teardown
from learning_platform.core.database import create_engine
from learning_platform.core.settings import PROJECT_ROOT, get_settings
from learning_platform.dev.embedded_temporal import search_attribute_args, temporal_cli_path
from learning_platform.jobs.ai_processing.contracts import AiProcessingInput, ai_task_queue
from learning_platform.migrations import upgrade
from learning_platform.temporal.payload_codec import data_converter
from tests.ai_processing_helpers import summarising_responder
from tests.fake_openai import FakeOpenAI, RecordedRequest, Reply
from tests.pages_server import serving_pages
from workflows.ai_processing import AiProcessing


async def load(engine: AsyncEngine, pages_url: str, sessions: int, pages: int) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("TRUNCATE users, sessions, url_summaries RESTART IDENTITY CASCADE"))
        await conn.execute(text("INSERT INTO users (email, display_name) VALUES ('b@x', 'b')"))
        await conn.execute(
            text(
                "INSERT INTO sessions (user_id, title, status, ended_at) "
                "SELECT 1, 'Session ' || n, 'processing', now() FROM generate_series(1, :n) n"
            ),
            {"n": sessions},
        )
        # Every page distinct, so no summary comes from the cache.
        await conn.execute(
            text(
                "INSERT INTO page_visits (session_id, url, title) "
                "SELECT s.id, :base || '/article/' || (s.id * :p + k), 'Page ' || k "
                "FROM sessions s, generate_series(0, :p - 1) k"
            ),
            {"base": pages_url, "p": pages},
        )


def compile_bytecode() -> None:
    """As in the image, where pip compiled the package: the workflow sandbox re-imports the
    workflow modules for every run and would otherwise compile their source each time (a
    shell with PYTHONDONTWRITEBYTECODE=1 never writes the bytecode)."""
    for package in ("workflows", "contracts", "activities", "learning_platform"):
        compileall.compile_dir(PROJECT_ROOT / package, quiet=1)


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, str(PROJECT_ROOT / "worker.py")],
            env={**os.environ, **env},
            stdout=output,
            stderr=subprocess.STDOUT,
        )


async def wait_for_pollers(
    client: Client, task_queue: str, process: subprocess.Popen[bytes], log: Path
) -> None:
    """Until the worker polls the AI queue for activities (it has started completely)."""
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=ai_task_queue(task_queue)),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
    )
    deadline = time.monotonic() + 60
    while not (await client.workflow_service.describe_task_queue(request)).pollers:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker did not start; see {log}")
        await asyncio.sleep(0.1)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def remaining(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        query = text("SELECT count(*) FROM sessions WHERE status = 'processing'")
        return int(await conn.scalar(query) or 0)


async def run(sessions: int, pages: int, latency: float, concurrency: int) -> None:
    url = database_url()
    await asyncio.to_thread(upgrade, url)
    # The worker inherits this environment's PAYLOAD_CODEC_KEYS; the client encrypts alike.
    temporal = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli_path(),
        dev_server_extra_args=search_attribute_args(),
        data_converter=data_converter(get_settings()),
    )
    engine = create_engine(url, pool_size=2)
    task_queue = f"bench-{uuid.uuid4().hex[:8]}"
    log = Path(tempfile.mkdtemp(prefix="bench-ai-")) / "worker.log"

    def slow_model(request: RecordedRequest) -> Reply:
        reply = summarising_responder(request)
        reply.delay = latency
        return reply

    try:
        with serving_pages() as pages_url, FakeOpenAI.running() as llm:
            llm.responder = slow_model
            await load(engine, pages_url, sessions, pages)
            compile_bytecode()
            worker = start_worker(
                {
                    "DATABASE_URL": url,
                    "TEMPORAL_ADDRESS": temporal.client.service_client.config.target_host,
                    "TASK_QUEUE": task_queue,
                    "METRICS_PORT": "0",
                    "LOG_LEVEL": "WARNING",
                    "AI_MAX_CONCURRENCY": str(concurrency),
                    "OPENAI_API_KEY": "bench",
                    "OPENAI_BASE_URL": llm.base_url,
                    "OPENAI_MODEL": llm.model,
                    "CRAWLER_ALLOWED_HOSTS": json.dumps(["127.0.0.1"]),
                },
                log,
            )
            try:
                await wait_for_pollers(temporal.client, task_queue, worker, log)
                cpu_before = cpu_seconds(worker.pid)
                started = time.monotonic()
                sweep = await temporal.client.execute_workflow(
                    AiProcessing.run,
                    AiProcessingInput(batch_size=500),
                    id=f"bench-sweep-{task_queue}",
                    task_queue=task_queue,
                )
                # The sessions' workflows run on their own; their rows say when all are done.
                while await remaining(engine):  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
                wall = time.monotonic() - started
                rss = peak_rss_mb(worker.pid)
                cpu = cpu_seconds(worker.pid) - cpu_before
            finally:
                worker.terminate()
                worker.wait(timeout=30)
            report(sessions, pages, latency, concurrency, wall, rss, sweep.workflows_started, llm)
            print(
                f"worker CPU          {cpu:>8.1f} s  ({cpu / sessions * 1000:.0f} ms per session)"
            )
            first = llm.requests[0].received_at - started if llm.requests else float("nan")
            print(f"first LLM request   {first:>8.1f} s  after the sweep started")
            print(f"load average        {' '.join(f'{n:.2f}' for n in os.getloadavg())}")
            await check(engine, sessions)
    finally:
        await engine.dispose()
        await temporal.shutdown()


def report(
    sessions: int,
    pages: int,
    latency: float,
    concurrency: int,
    wall: float,
    rss: float,
    started: int,
    llm: FakeOpenAI,
) -> None:
    calls = sessions * (pages + 1)
    ideal = calls * latency / concurrency
    print(
        f"sessions {sessions} x pages {pages}, LLM latency {latency * 1000:.0f} ms, "
        f"AI concurrency {concurrency}; sweep started {started} workflows"
    )
    print(
        f"LLM requests        {len(llm.requests):>8,} (expected {calls:,}); "
        f"most at once {llm.max_in_flight}"
    )
    print(f"ideal               {ideal:>8.1f} s  (requests x latency / concurrency)")
    print(f"wall                {wall:>8.1f} s")
    print(f"wall / ideal        {wall / ideal:>8.2f} x  (target ≤ 1.3)")
    print(f"worker peak RSS     {rss:>8.0f} MB (target ≤ 300)")  # fmt: skip


async def check(engine: AsyncEngine, sessions: int) -> None:
    async with engine.connect() as conn:
        completed = await conn.scalar(
            text("SELECT count(*) FROM sessions WHERE status = 'completed'")
        )
        maps = await conn.scalar(text("SELECT count(*) FROM mind_maps"))
    if completed != sessions or maps != sessions:
        raise SystemExit(f"expected {sessions} completed sessions and maps: {completed}, {maps}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--pages", type=int, default=10)
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    asyncio.run(run(args.sessions, args.pages, args.latency, args.concurrency))


if __name__ == "__main__":
    exits_without_teardown(main)()
