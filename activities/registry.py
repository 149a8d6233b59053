"""Which activities a worker runs, built from the process's dependencies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.plugin import SimplePlugin

from activities.ai_processing import SessionAiActivities, SessionProcessingActivities
from activities.browsing_sessions import BrowsingSessionActivities
from activities.learn_stats import LearnStatsActivities
from activities.outbox_handlers import build_handlers
from activities.outbox_relay import OutboxRelayActivities
from activities.question_sets import QuestionAiActivities, QuestionSetActivities
from activities.retention import RetentionActivities
from learning_platform.ai.llm import build_llm
from learning_platform.core.settings import Settings
from learning_platform.crawler.fetch import Crawler, CrawlPolicy
from learning_platform.jobs.ai_processing.ai import build_session_ai
from learning_platform.jobs.question_sets.ai import build_question_ai
from learning_platform.storage import build_storage


@dataclass
class Dependencies:
    settings: Settings
    engine: AsyncEngine
    temporal: Client


def build_activities(deps: Dependencies) -> list[Callable[..., Any]]:
    """Activities for the main task queue (`TASK_QUEUE`); a new job family adds its own here."""
    sessions = BrowsingSessionActivities(deps.engine, deps.settings.cleanup_batch_size)
    session_processing = SessionProcessingActivities(
        deps.engine, deps.temporal, deps.settings.task_queue
    )
    storage = build_storage(deps.settings)
    question_sets = QuestionSetActivities(deps.engine, storage, deps.settings)
    relay = OutboxRelayActivities(
        deps.engine, deps.settings, deps.temporal, build_handlers(deps.temporal, deps.settings)
    )
    stats = LearnStatsActivities(
        deps.engine, deps.settings.timezone, deps.settings.learn_stats_batch_size
    )
    retention = RetentionActivities(deps.engine, deps.settings.retention_batch_size)
    return [
        sessions.fail_stale_sessions,
        sessions.record_active_sessions,
        session_processing.start_session_workflows,
        session_processing.load_session_work,
        session_processing.complete_session,
        session_processing.fail_session,
        session_processing.load_session_state,
        session_processing.complete_session_with_stored_map,
        question_sets.prepare_generation,
        question_sets.save_generated_questions,
        question_sets.check_generation_attempt,
        question_sets.complete_staged_generation,
        question_sets.fail_generation_attempt,
        question_sets.fail_stale_question_sets,
        question_sets.retry_failed_question_sets,
        question_sets.delete_unused_sources,
        relay.drain_outbox,
        relay.ensure_outbox_relay,
        stats.reset_broken_streaks,
        stats.recalculate_learn_stats,
        retention.prune_expired_rows,
    ]


class ConnectionPool(Protocol):
    @property
    def is_closed(self) -> bool: ...

    async def aclose(self) -> None: ...


class GroupWriter(Protocol):
    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class AiQueue:
    """The AI task queue's activities, the group writers they write through (the finished
    pages') and the connection pools they share (the crawler's, the LLM's): `plugin` closes
    the writers (writing what they hold), then the pools, once the queue's worker has stopped."""

    activities: list[Callable[..., Any]]
    pools: tuple[ConnectionPool, ...]
    writers: tuple[GroupWriter, ...]

    @property
    def plugin(self) -> SimplePlugin:
        @asynccontextmanager
        async def close_pools_after_run() -> AsyncIterator[None]:
            try:
                yield
            finally:
                for writer in self.writers:
                    await writer.aclose()
                for pool in self.pools:
                    await pool.aclose()

        return SimplePlugin("learning-jobs.ai-connection-pools", run_context=close_pools_after_run)


def build_ai_activities(deps: Dependencies) -> AiQueue:
    """Activities for the AI task queue (`TASK_QUEUE` + "-ai"), whose workers run at most
    AI_MAX_CONCURRENCY of them at once."""
    settings = deps.settings
    crawler = Crawler(
        CrawlPolicy(
            allowed_hosts=frozenset(host.lower() for host in settings.crawler_allowed_hosts),
            max_bytes=settings.crawler_max_bytes,
            max_redirects=settings.crawler_max_redirects,
            fetch_deadline_seconds=settings.crawler_fetch_deadline_seconds,
            timeout_seconds=settings.crawler_timeout_seconds,
        ),
    )
    # One LLM client (one connection pool) and one limit for every LLM request this process
    # makes, sessions and question sets alike.
    llm = build_llm(settings)
    llm_slots = asyncio.Semaphore(settings.ai_max_concurrency)
    session_ai = SessionAiActivities(
        deps.engine,
        build_session_ai(settings, llm),
        crawler,
        llm_slots=llm_slots,
        llm_concurrency=settings.ai_max_concurrency,
    )
    question_ai = QuestionAiActivities(
        deps.engine, build_storage(settings), build_question_ai(settings, llm), llm_slots=llm_slots
    )

    return AiQueue(
        activities=[
            session_ai.summarize_session_pages,
            session_ai.build_mind_map,
            session_ai.summarize_session,
            session_ai.build_session_mind_map,
            question_ai.generate_questions,
            question_ai.generate_staged_questions,
        ],
        pools=(crawler,) if llm is None else (crawler, llm),
        writers=(session_ai.finished_pages,),
    )
