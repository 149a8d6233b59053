"""`make dev` end to end, as a newcomer runs it: from a clean clone, on a machine whose dev ports
are free (make test-dev; CI runs it).

The clone gets its own virtualenv (`make setup`), then `make dev` runs in its own process group
so Ctrl-C can be sent to it as a terminal would. Checked: the banner appears only once the
worker polls and the API answers, every URL it prints answers, a notification reaches the live
page in headless Chromium seconds after the printed trigger command, the Temporal UI lists every
schedule (the README's screenshot), the output has no warning a user would take for an error, and
Ctrl-C leaves no process running and no port bound.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest
from playwright.async_api import BrowserContext
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from learning_platform.core.settings import Settings
from learning_platform.dev.demo_site import DEMO_SITE_PORT
from learning_platform.scheduling.declarations import declared_schedules
from tests.chromium import chromium

# A fresh virtualenv and a cold start: minutes on a busy machine, beyond the suite default.
pytestmark = [pytest.mark.dev_stack, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[2]
DEV_PORTS = (7233, 8233, 8000, 9464, DEMO_SITE_PORT)
SETUP_TIMEOUT_SECONDS = 600
READY_TIMEOUT_SECONDS = 240
STOP_TIMEOUT_SECONDS = 60
BROWSER_WAIT_MS = 30_000
SCREENSHOT = REPO / "docs" / "temporal-ui-schedules.png"
# Lines a newcomer would read as something gone wrong.
ALARMING = re.compile(
    r"Traceback|command not found|XDG_RUNTIME_DIR|\"level\": \"(error|critical)\"|Error:",
)
# The one warning make dev gives on purpose: the published development JWT secret.
EXPECTED_WARNINGS = ("JWT_SECRET is the built-in DEVELOPMENT secret",)


def ports_in_use() -> list[int]:
    listening = {c.laddr.port for c in psutil.net_connections("inet") if c.status == "LISTEN"}
    return sorted(listening & set(DEV_PORTS))


def processes_under(directory: Path) -> list[str]:
    """Command lines of live processes that run something from `directory`."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if str(directory) in cmdline and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(cmdline)
    return found


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean clone of this repository's HEAD with its own virtualenv, as on a new laptop."""
    if busy := ports_in_use():
        pytest.fail(f"make dev needs ports {busy} free: stop whatever listens there first")
    target = tmp_path_factory.mktemp("newcomer") / "learning-jobs"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(target)], check=True)
    setup = subprocess.run(
        ["make", "setup"], cwd=target, capture_output=True, text=True,
        timeout=SETUP_TIMEOUT_SECONDS,
    )  # fmt: skip
    assert setup.returncode == 0, setup.stdout + setup.stderr
    return target


@dataclass
class RunningDev:
    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    banner: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def urls(self) -> list[str]:
        return re.findall(r"http://localhost:\d+\S*", self.output.split("Temporal UI", 1)[-1])


async def read_lines(dev: RunningDev) -> None:
    assert dev.process.stdout is not None
    while raw := await dev.process.stdout.readline():
        line = raw.decode(errors="replace")
        dev.lines.append(line)
        if "Ctrl-C stops everything" in line:
            dev.banner.set()


def environment(clone: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEST_", "DATABASE_URL"))}
    env.pop("TEMPORAL_ADDRESS", None)
    env.pop("XDG_RUNTIME_DIR", None)  # as on a server or in a container: no session bus
    return env | {"PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
async def dev(clone: Path) -> AsyncIterator[RunningDev]:
    process = await asyncio.create_subprocess_exec(
        "make", "dev", cwd=clone, env=environment(clone),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    running = RunningDev(process)
    reader = asyncio.create_task(read_lines(running))
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            await running.banner.wait()
        yield running
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGINT)
        try:
            async with asyncio.timeout(STOP_TIMEOUT_SECONDS):
                await process.wait()
        finally:
            if process.returncode is None:
                os.killpg(process.pid, signal.SIGKILL)
            await reader


def token(clone: Path, user_id: int) -> str:
    minted = subprocess.run(
        [str(clone / ".venv/bin/learning-jobs"), "api", "token", str(user_id)],
        cwd=clone, capture_output=True, text=True, check=True, env=environment(clone),
    )  # fmt: skip
    return minted.stdout.strip()


async def test_the_banner_comes_once_the_worker_polls_and_the_api_answers(
    dev: RunningDev,
) -> None:
    before_banner = dev.output.split("Temporal UI", 1)[0]
    assert '"msg": "worker started"' in before_banner
    assert '"path": "/healthz", "status": 200' in before_banner


async def test_every_printed_url_answers(dev: RunningDev, clone: Path) -> None:
    urls = dev.urls()
    assert len(urls) >= 3, dev.output[-2000:]
    async with httpx.AsyncClient(timeout=10) as http:
        for url in urls:
            if url.endswith("/stream"):
                headers = {"Authorization": f"Bearer {token(clone, 1)}"}
                async with http.stream("GET", url, headers=headers) as response:
                    assert response.status_code == 200, url
                    assert response.headers["content-type"].startswith("text/event-stream")
                continue
            response = await http.get(url)
            assert response.status_code == 200, (url, response.status_code)


@pytest.fixture(scope="module")
async def browser(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BrowserContext]:
    async with chromium(tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context


async def test_the_printed_trigger_reaches_the_live_page_in_a_browser(
    dev: RunningDev, clone: Path, browser: BrowserContext
) -> None:
    command = re.search(r"A notification now\s+(\S+ dev request-question-set)", dev.output)
    live_page = re.search(r"Live page\s+(http://\S+/dev/live#token=\S+)", dev.output)
    assert command and live_page, dev.output[-2000:]
    page = await browser.new_page()
    await page.goto(live_page.group(1))
    await page.wait_for_function("window.opened >= 1", timeout=BROWSER_WAIT_MS)

    requested = await asyncio.to_thread(
        subprocess.run, [*command.group(1).split()], cwd=clone,
        capture_output=True, text=True, env=environment(clone),
    )  # fmt: skip
    assert requested.returncode == 0, requested.stderr
    asked = re.search(r"question set (\d+) requested", requested.stdout)
    assert asked, requested.stdout
    # The demo's own jobs notify user 1 too (retried sets): wait for this set's event.
    arrived = (
        "window.received.some(item => item.kind === 'question_set.completed' && "
        f"item.notification.payload.question_set_id === {int(asked.group(1))})"
    )
    try:
        await page.wait_for_function(arrived, timeout=BROWSER_WAIT_MS)
    except PlaywrightTimeoutError:
        pytest.fail("the live page got no notification; make dev said:\n" + dev.output[-4000:])
    assert "Quiz requested from make dev" in await page.inner_text("#events")


async def test_the_temporal_ui_shows_every_schedule(
    dev: RunningDev, browser: BrowserContext, tmp_path: Path
) -> None:
    """Also the README's screenshot: UPDATE_SCREENSHOTS=1 writes it into docs/."""
    schedules_url = next(url for url in dev.urls() if url.endswith("/schedules"))
    page = await browser.new_page()
    await page.set_viewport_size({"width": 1400, "height": 900})
    await page.goto(schedules_url)
    for schedule in (job.schedule_id for job in declared_schedules(Settings())):
        await page.get_by_text(schedule, exact=True).first.wait_for(timeout=BROWSER_WAIT_MS)
    target = SCREENSHOT if os.environ.get("UPDATE_SCREENSHOTS") else tmp_path / "ui.png"
    await page.screenshot(path=target)
    assert target.stat().st_size > 20_000


async def test_ctrl_c_stops_everything_and_the_output_had_no_alarming_lines(
    dev: RunningDev, clone: Path
) -> None:
    os.killpg(dev.process.pid, signal.SIGINT)
    async with asyncio.timeout(STOP_TIMEOUT_SECONDS):
        status = await dev.process.wait()

    # make re-raises the SIGINT it got once dev.py has stopped: killed by SIGINT is a clean end.
    assert status in (0, 130, -signal.SIGINT), dev.output[-3000:]
    assert '"msg": "stopped"' in dev.output
    assert processes_under(clone) == []
    assert ports_in_use() == []
    alarming = [
        line
        for line in dev.output.splitlines()
        if ALARMING.search(line) or ('"level": "warning"' in line and not expected(line))
    ]
    assert alarming == [], "\n".join(alarming)


def expected(line: str) -> bool:
    return any(warning in line for warning in EXPECTED_WARNINGS)
