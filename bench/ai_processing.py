"""ai-processing: SESSIONS sessions x PAGES pages through a real worker process.

The worker (`worker.py`, as deployed) reads every page from a loopback web server and asks a
loopback Chat Completions server that answers each request after LATENCY seconds; the AI task
queue runs CONCURRENCY activities at once. One sweep starts every session's workflow.

  ideal — total LLM latency / concurrency: (pages + 1 mind map) x sessions x LATENCY / CONCURRENCY
  wall  — from the sweep's start until no session is left processing
  RSS   — the worker process's peak resident memory (VmHWM)
  CPU   — the worker process's CPU time during the run (the machine's load average beside it)

    .venv/bin/python -m bench.ai_processing [--sessions 200] [--pages 10] [--latency 0.3]
        [--concurrency 16] [--runs 1] [--background-load N] [--baseline REV] [--profile DIR]

--background-load N spins N busy-loop processes (one core each) for the measured part of every
run, as a busy production host would: the figures then say what the worker gets on such a host.
--baseline REV runs the worker of commit REV (a `git archive` of it) before each run of this
tree's worker, on the same stack and the same load: the comparison is interleaved, so machine
noise falls on both. --profile DIR records every measured worker with py-spy (installed
separately: `pip install py-spy`) into DIR as collapsed stacks.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
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

# A process that keeps one core busy and imports nothing (`-S`: not even site).
_HOG = [sys.executable, "-S", "-c", "while True: pass"]


@dataclass(frozen=True)
class Measurement:
    label: str
    wall: float
    cpu: float
    rss_mb: float
    requests: int
    max_in_flight: int
    load: tuple[float, float, float]
    threads: dict[str, float]


@contextlib.contextmanager
def cpu_hogs(count: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`count` busy-loop processes for the duration of the block, stopped (and reaped) after."""
    hogs = [subprocess.Popen(_HOG) for _ in range(count)]
    try:
        yield hogs
    finally:
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait()


async def load(engine: AsyncEngine, pages_url: str, sessions: int, pages: int) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "TRUNCATE users, sessions, url_summaries, page_crawls, notifications "
                "RESTART IDENTITY CASCADE"
            )
        )
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


def compile_bytecode(root: Path) -> None:
    """As in the image, where pip compiled the package: the workflow sandbox re-imports the
    workflow modules for every run and would otherwise compile their source each time (a
    shell with PYTHONDONTWRITEBYTECODE=1 never writes the bytecode)."""
    for package in ("workflows", "contracts", "activities", "learning_platform"):
        if (root / package).is_dir():
            compileall.compile_dir(root / package, quiet=1)


def archive_tree(revision: str) -> Path:
    """The project at `revision`, unpacked from `git archive` into a temporary directory."""
    root = Path(tempfile.mkdtemp(prefix="bench-ai-baseline-"))
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision],
        cwd=PROJECT_ROOT,
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    return root


def start_worker(root: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`root`/worker.py; the script's directory comes first on sys.path, so it runs that tree."""
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, str(root / "worker.py")],
            cwd=root,
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


def _stat_cpu(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    return _stat_cpu(Path(f"/proc/{pid}/stat"))


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds so far by kind of thread: the Python main thread (the event loop: the
    activities, payload conversion), the SDK's Rust core (tokio threads: gRPC, protobuf),
    the other Python threads (page extraction in `asyncio.to_thread`, workflow activations in
    the SDK's workflow task executor), and any other."""
    by_kind: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            seconds = _stat_cpu(task / "stat")
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        if task.name == str(pid):
            kind = "event loop"
        elif name.startswith("tokio"):
            kind = "sdk core"
        elif name == "python":
            kind = "python threads"
        else:
            kind = "other"
        by_kind[kind] = by_kind.get(kind, 0.0) + seconds
    return by_kind


@contextlib.contextmanager
def profiled(pid: int, output: Path | None) -> Iterator[None]:
    """py-spy recording process `pid` into `output` (collapsed stacks) for the block."""
    if output is None:
        yield
        return
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    # --gil: samples of the thread holding the GIL, i.e. where Python spends its CPU.
    command = [py_spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "50", "--gil"]
    spy = subprocess.Popen(
        [*command, "--nonblocking", "--output", str(output)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        spy.wait(timeout=60)


async def remaining(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        query = text("SELECT count(*) FROM sessions WHERE status = 'processing'")
        return int(await conn.scalar(query) or 0)


@dataclass
class Bench:
    temporal: WorkflowEnvironment
    engine: AsyncEngine
    database_url: str
    pages_url: str
    llm: FakeOpenAI
    sessions: int
    pages: int
    concurrency: int
    background_load: int
    profile_dir: Path | None
    llm_latency: float

    async def measure(self, label: str, root: Path) -> Measurement:
        """One run of `root`'s worker on freshly loaded sessions."""
        await load(self.engine, self.pages_url, self.sessions, self.pages)
        self.llm.requests.clear()
        self.llm.max_in_flight = 0
        task_queue = f"bench-{uuid.uuid4().hex[:8]}"
        log = Path(tempfile.mkdtemp(prefix="bench-ai-")) / "worker.log"
        client = self.temporal.client
        worker = start_worker(
            root,
            {
                "DATABASE_URL": self.database_url,
                "TEMPORAL_ADDRESS": client.service_client.config.target_host,
                "TASK_QUEUE": task_queue,
                "METRICS_PORT": "0",
                "LOG_LEVEL": "WARNING",
                "AI_MAX_CONCURRENCY": str(self.concurrency),
                "OPENAI_API_KEY": "bench",
                "OPENAI_BASE_URL": self.llm.base_url,
                "OPENAI_MODEL": self.llm.model,
                "CRAWLER_ALLOWED_HOSTS": json.dumps(["127.0.0.1"]),
            },
            log,
        )
        profile = None
        if self.profile_dir is not None:
            profile = self.profile_dir / f"{label.replace(' ', '-')}-{task_queue}.txt"
        try:
            await wait_for_pollers(client, task_queue, worker, log)
            with cpu_hogs(self.background_load), profiled(worker.pid, profile):
                cpu_before, threads_before = cpu_seconds(worker.pid), thread_cpu(worker.pid)
                started = time.monotonic()
                await client.execute_workflow(
                    AiProcessing.run,
                    AiProcessingInput(batch_size=500),
                    id=f"bench-sweep-{task_queue}",
                    task_queue=task_queue,
                )
                # The sessions' workflows run on their own; their rows say when all are done.
                while await remaining(self.engine):  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
                wall = time.monotonic() - started
                cpu = cpu_seconds(worker.pid) - cpu_before
                threads = {
                    kind: seconds - threads_before.get(kind, 0.0)
                    for kind, seconds in thread_cpu(worker.pid).items()
                }
                rss = peak_rss_mb(worker.pid)
                load_average = os.getloadavg()
        finally:
            worker.terminate()
            worker.wait(timeout=30)
        await check(self.engine, self.sessions)
        return Measurement(
            label, wall, cpu, rss, len(self.llm.requests), self.llm.max_in_flight, load_average,
            threads,
        )  # fmt: skip

    @property
    def ideal(self) -> float:
        return self.sessions * (self.pages + 1) * self.llm_latency / self.concurrency


async def run(
    sessions: int,
    pages: int,
    latency: float,
    concurrency: int,
    runs: int,
    background_load: int,
    baseline: str | None,
    profile_dir: Path | None,
) -> None:
    url = database_url()
    await asyncio.to_thread(upgrade, url)
    # The worker inherits this environment's PAYLOAD_CODEC_KEYS; the client encrypts alike.
    temporal = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli_path(),
        dev_server_extra_args=search_attribute_args(),
        data_converter=data_converter(get_settings()),
    )
    engine = create_engine(url, pool_size=2)
    trees = [("this tree", PROJECT_ROOT)]
    if baseline is not None:
        trees.insert(0, (f"baseline {baseline}", archive_tree(baseline)))
    for _, root in trees:
        compile_bytecode(root)
    if profile_dir is not None:
        await asyncio.to_thread(profile_dir.mkdir, parents=True, exist_ok=True)

    def slow_model(request: RecordedRequest) -> Reply:
        reply = summarising_responder(request)
        reply.delay = latency
        return reply

    print(
        f"sessions {sessions} x pages {pages}, LLM latency {latency * 1000:.0f} ms, "
        f"AI concurrency {concurrency}, {runs} run(s); background load: "
        + (f"{background_load} busy-loop process(es)" if background_load else "none"),
        flush=True,
    )
    results: list[Measurement] = []
    try:
        with serving_pages() as pages_url, FakeOpenAI.running() as llm:
            llm.responder = slow_model
            bench = Bench(
                temporal, engine, url, pages_url, llm, sessions, pages, concurrency,
                background_load, profile_dir, latency,
            )  # fmt: skip
            for number in range(1, runs + 1):
                for label, root in trees:
                    result = await bench.measure(label, root)
                    results.append(result)
                    print_run(number, result, bench)
            summarise(results, bench, [label for label, _ in trees])
    finally:
        await engine.dispose()
        await temporal.shutdown()
        for label, root in trees:
            if label != "this tree":
                shutil.rmtree(root, ignore_errors=True)


def print_run(number: int, result: Measurement, bench: Bench) -> None:
    expected = bench.sessions * (bench.pages + 1)
    print(
        f"run {number} {result.label:<22} wall {result.wall:6.1f} s "
        f"({result.wall / bench.ideal:.2f}x ideal)  worker CPU {result.cpu:5.1f} s "
        f"({result.cpu / bench.sessions * 1000:4.0f} ms/session)  RSS {result.rss_mb:4.0f} MB  "
        f"LLM requests {result.requests}/{expected} (≤{result.max_in_flight} at once)  "
        f"load {' '.join(f'{n:.2f}' for n in result.load)}",
        flush=True,
    )
    threads = ", ".join(
        f"{kind} {seconds / bench.sessions * 1000:.0f}"
        for kind, seconds in sorted(result.threads.items(), key=lambda item: -item[1])
    )
    print(f"      worker CPU by thread, ms/session: {threads}", flush=True)


def _spread(values: list[float], unit: str, digits: int = 0) -> str:
    median = statistics.median(values)
    if len(values) == 1:
        return f"{median:.{digits}f}{unit}"
    return f"{median:.{digits}f}{unit} ({min(values):.{digits}f} to {max(values):.{digits}f})"


def summarise(results: list[Measurement], bench: Bench, labels: list[str]) -> None:
    print(
        f"\nideal {bench.ideal:.1f} s (requests x latency / concurrency); "
        "median (min to max) over the runs:"
    )
    cpu_ms: dict[str, float] = {}
    for label in labels:
        mine = [r for r in results if r.label == label]
        per_session = [r.cpu / bench.sessions * 1000 for r in mine]
        cpu_ms[label] = statistics.median(per_session)
        print(f"  {label}")
        print(f"    worker CPU per session {_spread(per_session, ' ms')}  (target ≤ 90 ms)")
        ratios = [r.wall / bench.ideal for r in mine]
        print(f"    wall / ideal           {_spread(ratios, 'x', 2)}  (target ≤ 1.3)")
        print(f"    worker peak RSS        {_spread([r.rss_mb for r in mine], ' MB')}")
    if len(labels) == 2:
        before, after = labels
        print(f"  worker CPU, this tree / baseline: {cpu_ms[after] / cpu_ms[before]:.2f}x")


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
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument(
        "--background-load",
        type=int,
        default=0,
        metavar="N",
        help="busy-loop processes (one core each) running during every measured run",
    )
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="interleave every run with one of the worker at commit REV",
    )
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="py-spy every measured worker into DIR"
    )
    args = parser.parse_args()
    asyncio.run(
        run(
            args.sessions,
            args.pages,
            args.latency,
            args.concurrency,
            args.runs,
            args.background_load,
            args.baseline,
            args.profile,
        )
    )


if __name__ == "__main__":
    exits_without_teardown(main)()
