"""ai-processing: the sweeper, the per-session workflow and their activities."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

SWEEPER_WORKFLOW = "AiProcessing"
SESSION_WORKFLOW = "ProcessSession"

START_SESSION_WORKFLOWS = "start_session_workflows"
LOAD_SESSION_WORK = "load_session_work"
SUMMARIZE_SESSION_PAGES = "summarize_session_pages"
BUILD_MIND_MAP = "build_mind_map"
COMPLETE_SESSION = "complete_session"
FAIL_SESSION = "fail_session"
# The steps of ProcessSession since IDS_ONLY_PATCH: ids and counts in, ids and counts out; the
# activities read pages, titles and summaries from the database (a session's pages are a
# user's browsing history, which Temporal's history must not hold). The steps above serve the
# workflows started before the patch; remove them with the old path.
IDS_ONLY_PATCH = "session-history-ids-only"
LOAD_SESSION_STATE = "load_session_state"
SUMMARIZE_SESSION = "summarize_session"
BUILD_SESSION_MIND_MAP = "build_session_mind_map"
COMPLETE_SESSION_WITH_STORED_MAP = "complete_session_with_stored_map"

# Registered on the Temporal server (jobs/contracts.py SEARCH_ATTRIBUTES) as an Int attribute.
SESSION_ID_SEARCH_ATTRIBUTE = "SessionId"
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
class LlmUsageCounts:
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0


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
    usage: LlmUsageCounts = field(default_factory=LlmUsageCounts)


@dataclass
class SessionPagesResult:
    pages: list[PageSummaryResult]


@dataclass
class SessionPageCounts:
    summarized: int
    cached: int
    failed: int
    usage: LlmUsageCounts


@dataclass
class PageProgress:
    """A finished page, by its place in the session's page list (no URL in the heartbeat)."""

    index: int
    outcome: str
    usage: LlmUsageCounts


@dataclass
class SummarizeProgress:
    pages: list[PageProgress]


@dataclass
class MindMapStored:
    usage: LlmUsageCounts


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
    usage: LlmUsageCounts


@dataclass
class SessionUsage:
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    pages_total: int = 0
    pages_summarized: int = 0
    pages_cached: int = 0
    pages_failed: int = 0

    def add(self, usage: LlmUsageCounts) -> None:
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
