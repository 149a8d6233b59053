"""Scale curves: every batch job that runs through `run_batches`, at 10^4 .. 10^7 rows, against
its raw SQL, drawn as one log-log plot (docs/scale_curves.png) in which linear growth is a
straight line of slope 1.

For each job and size: the table loaded with that many rows (the share the job changes as in the
job's own benchmark), then raw and job interleaved for --runs runs on the same data restored,
vacuumed and checkpointed before each (bench.stack.interleaved). Every point is kept in
docs/scale_curves.json with its date and load average; a later run replaces the points it
measured and keeps the others, and the plot is drawn from all of them.

    .venv/bin/python -m bench.scale_curves                       # every job, 10^4 .. 10^6
    .venv/bin/python -m bench.scale_curves --sizes 10000 100000  # a quick run
    .venv/bin/python -m bench.scale_curves --jobs cleanup-stale-sessions --sizes 10000000
    .venv/bin/python -m bench.scale_curves --plot-only           # redraw from the JSON

source-cleanup is not here: its batches delete objects in object storage before their rows, so
there is no raw SQL doing the same work to compare it with.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from bench import learn_stats, question_set_cleanup, retention, session_cleanup
from bench.stack import (
    BenchStack,
    autocommit,
    bench_stack,
    interleaved,
    run_workflow,
    settled,
    without_autovacuum,
)
from learning_platform.commands.process_exit import exits_without_teardown
from learning_platform.jobs.learn_stats.contracts import LearnStatsDailyInput, LearnStatsWeeklyInput
from workflows.learn_stats import LearnStatsDaily, LearnStatsWeekly

DOCS = Path(__file__).resolve().parent.parent / "docs"
RESULTS = DOCS / "scale_curves.json"
PLOT = DOCS / "scale_curves.png"


@dataclass(frozen=True)
class Family:
    """One batch job: how to load `rows` rows, put the changed ones back, and run both sides."""

    job: str  # the schedule id
    raw_sql: str  # what the raw side is, for the legend
    load: Callable[[AsyncEngine, int], Awaitable[None]]
    restore: Callable[[AsyncEngine, int], Awaitable[object]]  # the loaded state back
    raw: Callable[[AsyncEngine], Awaitable[int]]
    run_job: Callable[[BenchStack], Awaitable[int]]
    tables: tuple[str, ...]  # loaded (autovacuum off), truncated afterwards


# ---- learn-stats-daily: every user walked, nine in ten streaks broken -------------------------

DAILY_TABLES = ("users", "learn_stats")


async def load_daily(engine: AsyncEngine, users: int) -> None:
    await autocommit(
        engine,
        "TRUNCATE users RESTART IDENTITY CASCADE",
        f"INSERT INTO users (email, display_name) SELECT 'u' || n, 'u' "
        f"FROM generate_series(1, {users}) n",
        "INSERT INTO learn_stats (user_id, last_learned_date, current_streak, longest_streak) "
        "SELECT id, date '2026-11-20' - (id % 10)::int, 1 + id % 30, 30 FROM users",
    )


async def restore_daily(engine: AsyncEngine, users: int) -> None:
    await autocommit(
        engine,
        "UPDATE learn_stats SET current_streak = 1 + user_id % 30 WHERE current_streak = 0",
    )
    await settled(engine, "learn_stats")


async def daily_job(stack: BenchStack) -> int:
    input = LearnStatsDailyInput(scheduled_time=learn_stats.DAILY_AT)
    return (await run_workflow(stack, LearnStatsDaily.run, input)).reset_streaks


# ---- learn-stats-weekly: totals recounted from the learning records --------------------------

WEEKLY_TABLES = ("users", "learning_records", "learning_days", "learn_stats")


async def load_weekly(engine: AsyncEngine, records: int) -> None:
    await autocommit(
        engine,
        "TRUNCATE users RESTART IDENTITY CASCADE",
        "DROP TABLE IF EXISTS learn_stats_original",
    )
    await learn_stats.load(engine, max(records // 10, 1), records)


async def restore_weekly(engine: AsyncEngine, records: int) -> None:
    await learn_stats.restore(engine)
    await settled(engine, "learn_stats")


async def weekly_job(stack: BenchStack) -> int:
    input = LearnStatsWeeklyInput(scheduled_time=learn_stats.WEEKLY_AT)
    return (await run_workflow(stack, LearnStatsWeekly.run, input)).corrected_users


FAMILIES = {
    family.job: family
    for family in (
        Family(
            "cleanup-stale-sessions",
            "one UPDATE",
            lambda engine, rows: session_cleanup.load(engine, rows, rows * 3 // 10),
            lambda engine, rows: session_cleanup.restore(engine),
            session_cleanup.raw_update,
            session_cleanup.run_job,
            ("sessions",),
        ),
        Family(
            "question-set-cleanup",
            "one UPDATE (no notifications)",
            lambda engine, rows: question_set_cleanup.load(engine, rows, rows // 5),
            lambda engine, rows: question_set_cleanup.restore(engine),
            question_set_cleanup.raw_update,
            question_set_cleanup.run_job,
            ("question_sets", "notifications"),
        ),
        Family(
            "retention",
            "one DELETE",
            lambda engine, rows: retention.load(engine, rows, rows * 3 // 10),
            lambda engine, rows: retention.restore(engine, rows, rows * 3 // 10),
            retention.raw_delete,
            retention.run_job,
            ("notifications",),
        ),
        Family(
            "learn-stats-daily",
            "one UPDATE",
            load_daily,
            restore_daily,
            learn_stats.raw_daily,
            daily_job,
            DAILY_TABLES,
        ),
        Family(
            "learn-stats-weekly",
            "one statement",
            load_weekly,
            restore_weekly,
            learn_stats.raw_weekly,
            weekly_job,
            WEEKLY_TABLES,
        ),
    )
}


async def measure(family: Family, stack: BenchStack, rows: int, runs: int) -> dict[str, Any]:
    print(f"\n{family.job}: {rows:,} rows, loading ...", flush=True)
    started = time.perf_counter()
    await family.load(stack.engine, rows)
    await without_autovacuum(stack.engine, *family.tables)
    await family.restore(stack.engine, rows)
    expected = await family.raw(stack.engine)  # warm-up, and the count both must reach
    print(f"loaded in {time.perf_counter() - started:.0f} s; {expected:,} rows to change")
    await family.restore(stack.engine, rows)
    assert await family.run_job(stack) == expected  # warm-up, and the restored layout

    async def restored() -> int:
        await family.restore(stack.engine, rows)
        return expected

    measured = await interleaved(
        runs,
        restored,
        {"raw": lambda: family.raw(stack.engine), "job": lambda: family.run_job(stack)},
        expected,
    )
    print(measured.ratio_report("job", "raw"), flush=True)
    return {
        "job": family.job,
        "rows": rows,
        "changed": expected,
        "raw_seconds": measured.seconds["raw"],
        "job_seconds": measured.seconds["job"],
        "load_average": [measured.load_before, measured.load_after],
        "batch_sizes": {
            "cleanup": stack.settings.cleanup_batch_size,
            "retention": stack.settings.retention_batch_size,
            "learn_stats": stack.settings.learn_stats_batch_size,
        },
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def saved_points() -> list[dict[str, Any]]:
    if not RESULTS.exists():
        return []
    points: list[dict[str, Any]] = json.loads(RESULTS.read_text())
    return points


def save(new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    replaced = {(p["job"], p["rows"]) for p in new}
    points = [p for p in saved_points() if (p["job"], p["rows"]) not in replaced] + new
    points.sort(key=lambda p: (p["job"], p["rows"]))
    RESULTS.write_text(json.dumps(points, indent=1) + "\n")
    return points


def plot(points: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (curves, ratios) = plt.subplots(
        1, 2, figsize=(13, 5.5), gridspec_kw={"width_ratios": [3, 2]}
    )
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    jobs = [job for job in FAMILIES if any(p["job"] == job for p in points)]
    for colour, job in zip(colours, jobs, strict=False):
        mine = sorted((p for p in points if p["job"] == job), key=lambda p: p["rows"])
        rows = [p["rows"] for p in mine]
        job_s = [statistics.median(p["job_seconds"]) for p in mine]
        raw_s = [statistics.median(p["raw_seconds"]) for p in mine]
        label = f"{job}"
        curves.plot(rows, job_s, "o-", color=colour, label=f"{label}: job")
        curves.plot(
            rows, raw_s, "s--", color=colour, alpha=0.6, label=f"{label}: {FAMILIES[job].raw_sql}"
        )
        worst = [max(j / r for j, r in zip(p["job_seconds"], p["raw_seconds"], strict=True))
                 for p in mine]  # fmt: skip
        median = [j / r for j, r in zip(job_s, raw_s, strict=True)]
        ratios.plot(rows, median, "o-", color=colour, label=job)
        ratios.plot(rows, worst, "v:", color=colour, alpha=0.5)
    all_rows = sorted({p["rows"] for p in points})
    if all_rows:
        # Slope 1 from the smallest size's median job time: where linear growth would lie.
        low = statistics.median(
            statistics.median(p["job_seconds"]) for p in points if p["rows"] == all_rows[0]
        )
        curves.plot(
            all_rows,
            [low * n / all_rows[0] for n in all_rows],
            color="grey",
            linewidth=0.8,
            linestyle="dotted",
            label="∝ rows (slope 1)",
        )
    curves.set_xscale("log")
    curves.set_yscale("log")
    curves.set_xlabel("rows in the table walked")
    curves.set_ylabel("seconds (median of the runs)")
    curves.set_title("batch job (solid) and its raw SQL (dashed)")
    curves.grid(True, which="both", alpha=0.3)
    curves.legend(fontsize=7, loc="upper left")
    ratios.axhline(1.3, color="red", linewidth=0.8, linestyle="--", label="1.3x")
    ratios.set_xscale("log")
    ratios.set_yscale("log")
    ratios.set_yticks([1, 1.3, 2, 5, 10, 20, 50], labels=["1", "1.3", "2", "5", "10", "20", "50"])
    ratios.set_xlabel("rows in the table walked")
    ratios.set_ylabel("job ÷ raw  (median ●, worst run ▼)")
    ratios.set_title("overhead of the batches and the workflow")
    ratios.grid(True, which="both", alpha=0.3)
    ratios.legend(fontsize=7)
    dates = sorted(p["measured_at"][:10] for p in points)
    figure.suptitle(
        f"Batch jobs against their raw SQL (bench/scale_curves.py; measured {dates[0]}"
        + (f" to {dates[-1]}" if dates[-1] != dates[0] else "")
        + ", 2-core machine shared with other suites)",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(PLOT, dpi=110)
    print(f"plot: {PLOT}")


def table(points: list[dict[str, Any]]) -> str:
    """The points as the Markdown table of docs/benchmarks.md."""
    lines = [
        "| job | rows | changed | raw (median) | job (median) | job ÷ raw per run | load (1 min) |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in points:
        ratios = ", ".join(
            f"{j / r:.2f}" for j, r in zip(p["job_seconds"], p["raw_seconds"], strict=True)
        )
        lines.append(
            f"| {p['job']} | {p['rows']:,} | {p['changed']:,} "
            f"| {statistics.median(p['raw_seconds']):.3f} s "
            f"| {statistics.median(p['job_seconds']):.3f} s | {ratios} "
            f"| {p['load_average'][0].split()[0]} → {p['load_average'][1].split()[0]} |"
        )
    return "\n".join(lines)


async def main(jobs: list[str], sizes: list[int], runs: int) -> None:
    new = []
    async with bench_stack() as stack:
        for job in jobs:
            family = FAMILIES[job]
            for rows in sizes:
                new.append(await measure(family, stack, rows, runs))
                save(new)  # a long run keeps what it measured so far
            await autocommit(
                stack.engine, f"TRUNCATE {', '.join(family.tables)} RESTART IDENTITY CASCADE"
            )
    points = save(new)
    print("\njob                      rows         job s      raw s   job/raw (worst)")
    for p in new:
        job_s, raw_s = statistics.median(p["job_seconds"]), statistics.median(p["raw_seconds"])
        worst = max(j / r for j, r in zip(p["job_seconds"], p["raw_seconds"], strict=True))
        print(f"{p['job']:<24} {p['rows']:>10,} {job_s:9.3f} {raw_s:10.3f} "
              f"{job_s / raw_s:7.2f}x ({worst:.2f}x)  load {p['load_average'][1]}")  # fmt: skip
    plot(points)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
    parser.add_argument(
        "--sizes", nargs="+", type=int, default=[10_000, 100_000, 1_000_000], metavar="ROWS"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--plot-only",
        action="store_true",
        help="redraw the plot and print the table, from the JSON",
    )
    args = parser.parse_args()
    if args.plot_only:
        print(table(saved_points()))
        plot(saved_points())
    else:
        exits_without_teardown(asyncio.run)(main(args.jobs, args.sizes, args.runs))
