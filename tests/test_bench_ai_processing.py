"""bench.ai_processing's own machinery: the background load and the CPU accounting."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from bench.ai_processing import cpu_hogs, cpu_seconds, thread_cpu


def _wait_until_busy(pid: int, seconds: float = 0.05, deadline: float = 30) -> None:
    give_up = time.monotonic() + deadline
    while cpu_seconds(pid) < seconds:
        assert time.monotonic() < give_up, f"hog {pid} used no CPU"
        time.sleep(0.01)


def test_background_load_spins_its_hogs_for_the_block_only() -> None:
    with cpu_hogs(2) as hogs:
        assert len(hogs) == 2
        for hog in hogs:
            assert hog.poll() is None
            _wait_until_busy(hog.pid)
    for hog in hogs:
        assert hog.returncode is not None
        assert not Path(f"/proc/{hog.pid}").exists() or _is_other_process(hog.pid)


def test_background_load_stops_when_the_run_fails() -> None:
    with pytest.raises(RuntimeError), cpu_hogs(1) as hogs:
        raise RuntimeError("the measured run failed")
    assert hogs[0].returncode is not None


def test_no_background_load_starts_nothing() -> None:
    with cpu_hogs(0) as hogs:
        assert hogs == []


def test_thread_cpu_names_the_main_thread() -> None:
    by_kind = thread_cpu(os.getpid())
    assert "event loop" in by_kind
    assert sum(by_kind.values()) <= cpu_seconds(os.getpid()) + 0.1


def _is_other_process(pid: int) -> bool:
    """The pid was reused by an unrelated process (not a hog: it does not spin our loop)."""
    try:
        return "while True: pass" not in Path(f"/proc/{pid}/cmdline").read_text()
    except FileNotFoundError:
        return True
