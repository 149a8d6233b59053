"""ai-processing: the sweeper, the per-session workflow and their activities."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from learning_platform.jobs.contracts import Activity, ActivityInterfaces, JobSchedule, TokenUsage

if TYPE_CHECKING:
    from learning_platform.core.settings import Settings

SWEEPER_WORKFLOW = "AiProcessing"
SESSION_WORKFLOW = "ProcessSession"

# Since IDS_ONLY_PATCH, ProcessSession's steps take and return ids and counts; its activities
# read pages, titles and summaries from the database (a session's pages are a user's browsing
# history, which Temporal's history must not hold). load_session_work, summarize_session_pages,
# build_mind_map and complete_session serve the workflows started before the patch; remove
# them with the old path.
IDS_ONLY_PATCH = "session-history-ids-only"

AI_TASK_QUEUE_SUFFIX = "-ai"


def session_workflow_id(session_id: int) -> str:
    """One id per session, so a session is never processed by two workflows at once."""
    return f"session-{session_id}"


def ai_task_queue(main_task_queue: str) -> str:
    """AI activities run on their own queue, whose workers cap concurrency (LLM rate limits)."""
    return main_task_queue + AI_TASK_QUEUE_SUFFIX


@dataclass
class AiProcessingInput:
    scheduled_time: datetime | None = None
    batch_size: int = 500


@dataclass
class AiProcessingResult:
    sessions_found: int
    workflows_started: int
    already_running: int


@dataclass
class StartSessionWorkflowsParams:
    after_session_id: int
    limit: int


@dataclass
class StartSessionWorkflowsResult:
    last_session_id: int | None
    found: int
    started: int
    already_running: int


@dataclass
class ProcessSessionInput:
    session_id: int


@dataclass
class PageRef:
    url: str
    title: str


@dataclass
class SessionWork:
    session_id: int
    user_id: int
    title: str
    status: str
    pages: list[PageRef]


@dataclass
class SessionState:
    session_id: int
    user_id: int
    status: str
    page_count: int


@dataclass
class SessionIdParams:
    session_id: int


@dataclass
class SummarizeSessionPagesParams:
    session_id: int
    pages: list[PageRef]


@dataclass
class PageSummaryResult:
    url: str
    title: str
    outcome: str  # 'summarized' | 'cached' | 'failed'
    summary: str = ""
    key_points: list[str] = field(default_factory=list)
    error: str | None = None
    usage: TokenUsage = field(default_factory=TokenUsage)


@dataclass
class SessionPagesResult:
    pages: list[PageSummaryResult]


@dataclass
class SessionPageCounts:
    summarized: int
    cached: int
    failed: int
    usage: TokenUsage


@dataclass
class PageProgress:
    """A finished page, by its place in the session's page list (no URL in the heartbeat)."""

    index: int
    outcome: str
    usage: TokenUsage


@dataclass
class SummarizeProgress:
    pages: list[PageProgress]


@dataclass
class MindMapStored:
    usage: TokenUsage


@dataclass
class BuildMindMapParams:
    session_id: int
    session_title: str
    pages: list[PageSummaryResult]


@dataclass
class MindMapResult:
    central_topic: str
    data: dict[str, Any]
    generator: str
    usage: TokenUsage


@dataclass
class SessionUsage(TokenUsage):
    """A session's usage and page counts (stored as its `session_llm_usage` row)."""

    pages_total: int = 0
    pages_summarized: int = 0
    pages_cached: int = 0
    pages_failed: int = 0

    def add(self, usage: TokenUsage) -> None:
        self.model = self.model or usage.model
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens
        self.requests += usage.requests


@dataclass
class CompleteSessionParams:
    session_id: int
    mind_map: MindMapResult
    usage: SessionUsage


@dataclass
class CompleteStoredSessionParams:
    session_id: int
    usage: SessionUsage


@dataclass
class FailSessionParams:
    session_id: int
    reason: str
    usage: SessionUsage
    # The failed pages (URL and error) are appended to the stored reason from the database.
    list_failed_pages: bool = False


@dataclass
class ProcessSessionResult:
    session_id: int
    outcome: str  # 'completed' | 'failed' | 'skipped' (not processing any more)
    reason: str | None = None
    usage: SessionUsage = field(default_factory=SessionUsage)


def schedules(settings: Settings) -> list[JobSchedule]:
    return [
        JobSchedule(
            schedule_id="ai-processing",
            workflow="AiProcessing",
            arg=AiProcessingInput(batch_size=settings.ai_sweep_batch_size),
            description="Each processing session gets its own workflow: crawl, summarise, mind map",
            every=timedelta(minutes=5),
        ),
    ]


class AiProcessingActivities(ActivityInterfaces):
    """The activities as workflows call them (`activities/ai_processing.py` implements each)."""

    start_session_workflows: Activity[StartSessionWorkflowsParams, StartSessionWorkflowsResult]
    """One batch of processing sessions → one workflow each (running ones left alone)."""

    load_session_work: Activity[ProcessSessionInput, SessionWork | None]
    """The session's status, title and pages (the path before IDS_ONLY_PATCH)."""

    load_session_state: Activity[ProcessSessionInput, SessionState | None]
    """The session's status and page count, or None if it is gone."""

    complete_session_with_stored_map: Activity[CompleteStoredSessionParams, bool]
    """Completes the session with its stored mind map; notifies its user."""

    complete_session: Activity[CompleteSessionParams, bool]
    """Stores the mind map and completes the session (the path before IDS_ONLY_PATCH)."""

    fail_session: Activity[FailSessionParams, bool]
    """Fails the session with the reason; notifies its user. False if it was not processing."""

    summarize_session_pages: Activity[SummarizeSessionPagesParams, SessionPagesResult]
    """Each page's summary from the cache, or read and summarised now (then cached), all pages at
    once. A finished page is stored as it completes and the heartbeats carry the finished pages,
    so a retry (after a rate limit, say) redoes only the pages that did not finish; one a lost
    worker finished after its last beat comes from the cache."""

    summarize_session: Activity[SessionIdParams, SessionPageCounts]
    """summarize_session_pages with the pages read from the database and counts returned: the
    session's URLs, titles and summaries stay out of the workflow's history."""

    build_session_mind_map: Activity[SessionIdParams, MindMapStored]
    """build_mind_map from the session's summaries in the database, the map stored there
    (complete_session_with_stored_map completes the session): only usage counts return."""

    build_mind_map: Activity[BuildMindMapParams, MindMapResult]
    """The mind map of the summarised pages (the path before IDS_ONLY_PATCH)."""
