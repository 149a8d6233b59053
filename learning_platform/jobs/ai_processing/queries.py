"""SQL of the ai-processing job: which sessions wait, what a session visited, the URL summary
cache, page outcomes, and the session's final state (with its notification, in one
transaction)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from urllib.parse import urldefrag

from sqlalchemy import Text, func, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from learning_platform.core.notifications import record_notification
from learning_platform.jobs.ai_processing.contracts import MindMapResult, SessionUsage
from learning_platform.jobs.ai_processing.models import PageCrawl
from learning_platform.jobs.browsing_sessions.models import SessionStatus


@dataclass(frozen=True)
class WaitingSession:
    id: int
    user_id: int
    page_count: int


@dataclass(frozen=True)
class VisitedPage:
    url: str
    title: str


@dataclass(frozen=True)
class SessionPages:
    id: int
    user_id: int
    title: str
    status: str
    pages: list[VisitedPage]


@dataclass(frozen=True)
class CachedSummary:
    title: str
    summary: str
    key_points: list[str]


_WAITING_SESSIONS = text(
    """
    SELECT s.id, s.user_id,
           (SELECT count(DISTINCT v.url) FROM page_visits v WHERE v.session_id = s.id) AS pages
      FROM sessions s
     WHERE s.status = 'processing' AND s.id > :after
     ORDER BY s.id
     LIMIT :limit
    """
)


async def waiting_sessions(
    conn: AsyncConnection, *, after_id: int, limit: int
) -> list[WaitingSession]:
    """Processing sessions with ids above `after_id`, in id order (keyset pagination)."""
    rows = await conn.execute(_WAITING_SESSIONS, {"after": after_id, "limit": limit})
    return [WaitingSession(row.id, row.user_id, row.pages) for row in rows]


def normalize_url(url: str) -> str:
    """The fragment never changes what a server sends, so it is not part of the page."""
    return urldefrag(url.strip()).url


# A session's row with its visits, in one round trip (no visit: one row of NULL visit columns).
# Plain SQL, as the page statements below: it runs three times per session.
_SESSION_PAGES = text(
    """
    SELECT s.user_id, s.title, s.status, v.url, v.title AS page_title
      FROM sessions s
      LEFT JOIN page_visits v ON v.session_id = s.id
     WHERE s.id = :session_id
     ORDER BY v.visited_at, v.id
    """
)


async def session_pages(conn: AsyncConnection, session_id: int) -> SessionPages | None:
    rows = (await conn.execute(_SESSION_PAGES, {"session_id": session_id})).all()
    if not rows:
        return None
    pages: dict[str, VisitedPage] = {}
    for row in rows:
        if row.url is None:
            continue
        normalized = normalize_url(row.url)
        pages.setdefault(normalized, VisitedPage(normalized, row.page_title or ""))
    first = rows[0]
    return SessionPages(
        id=session_id,
        user_id=first.user_id,
        title=first.title or "",
        status=first.status,
        pages=list(pages.values()),
    )


_CACHED_SUMMARIES = text(
    """
    SELECT url, title, summary, key_points
      FROM url_summaries
     WHERE url = ANY(CAST(:urls AS text[])) AND generator = :generator
    """
).columns(url=Text, title=Text, summary=Text, key_points=JSONB)


async def cached_summaries(
    conn: AsyncConnection, urls: list[str], generator: str
) -> dict[str, CachedSummary]:
    """The cached summaries among `urls` (one query for a whole session's pages)."""
    if not urls:
        return {}
    rows = await conn.execute(_CACHED_SUMMARIES, {"urls": urls, "generator": generator})
    return {row.url: CachedSummary(row.title, row.summary, list(row.key_points)) for row in rows}


@dataclass(frozen=True)
class FinishedPage:
    """What happened to one page of a session; a summarised page carries its summary."""

    session_id: int
    url: str
    outcome: str  # 'summarized' | 'cached' | 'failed'
    http_status: int | None = None
    error: str | None = None
    summary: CachedSummary | None = None


# The page statement runs for every finished page (thousands a minute on a busy worker), so it
# is plain SQL: building and compiling the equivalent Core statement each time cost ≈ 2 ms of
# CPU per page, several times the round trip (bench/ai_processing). It takes the pages of many
# sessions at once (the worker's group commit, activities/ai_processing.py) and so must not
# fail for one page's sake:
# - the first summary of a URL wins (ON CONFLICT DO NOTHING; within the statement, the
#   earliest row), and the latest outcome of a session's page (as one statement per page in
#   order would leave it; DO UPDATE may not touch a row twice in one statement);
# - a session deleted meanwhile gets no outcome rows (its foreign key would fail them all);
# - rows are inserted in key order, so two workers' groups lock shared rows in the same order.
_STORE_FINISHED_PAGES = text(
    """
    WITH finished AS (
        SELECT *
          FROM unnest(CAST(:session_ids AS bigint[]), CAST(:urls AS text[]),
                      CAST(:outcomes AS text[]), CAST(:statuses AS integer[]),
                      CAST(:errors AS text[]), CAST(:titles AS text[]),
                      CAST(:summaries AS text[]), CAST(:key_points AS text[]))
               WITH ORDINALITY
               AS f(session_id, url, outcome, http_status, error, title, summary, key_points, n)
    ), cached AS (
        INSERT INTO url_summaries (url, generator, title, summary, key_points)
        SELECT DISTINCT ON (url) url, :generator, title, summary, CAST(key_points AS jsonb)
          FROM finished
         WHERE summary IS NOT NULL
         ORDER BY url, n
        ON CONFLICT DO NOTHING
    )
    INSERT INTO page_crawls (session_id, url, outcome, http_status, error)
    SELECT DISTINCT ON (f.session_id, f.url) f.session_id, f.url, f.outcome, f.http_status,
           f.error
      FROM finished f
     WHERE EXISTS (SELECT FROM sessions s WHERE s.id = f.session_id)
     ORDER BY f.session_id, f.url, f.n DESC
    ON CONFLICT (session_id, url) DO UPDATE
       SET outcome = excluded.outcome, http_status = excluded.http_status,
           error = excluded.error, crawled_at = now()
    """
)


def _storable(value: str) -> str:
    """`value` as PostgreSQL text and jsonb can hold it: without NUL, lone surrogates replaced
    (an LLM's JSON answer can carry both; one such page would fail its whole group)."""
    return value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


async def store_finished_pages(
    conn: AsyncConnection, pages: list[FinishedPage], *, generator: str
) -> None:
    """Record each page's outcome for its session and cache the summaries (summaries of
    `generator`), in one statement for all the pages, of any sessions."""
    if not pages:
        return
    summaries = [page.summary for page in pages]
    await conn.execute(
        _STORE_FINISHED_PAGES,
        {
            "generator": generator,
            "session_ids": [page.session_id for page in pages],
            "urls": [page.url for page in pages],
            "outcomes": [page.outcome for page in pages],
            "statuses": [page.http_status for page in pages],
            "errors": [None if page.error is None else _storable(page.error) for page in pages],
            "titles": [None if s is None else _storable(s.title) for s in summaries],
            "summaries": [None if s is None else _storable(s.summary) for s in summaries],
            "key_points": [
                None
                if s is None
                else json.dumps([_storable(point) for point in s.key_points], ensure_ascii=False)
                for s in summaries
            ],
        },
    )


# A session's end runs once per session, on the main queue's local activities; as plain SQL
# (like the page statements above) its statements cost ≈ 0.3 ms of CPU each instead of
# 0.6 to 1.4 ms built as Core statements (bench/ai_processing).
_LOCK_PROCESSING = text(
    """
    SELECT s.user_id, m.central_topic
      FROM sessions s
      LEFT JOIN mind_maps m ON m.session_id = s.id
     WHERE s.id = :session_id AND s.status = 'processing'
       FOR UPDATE OF s
    """
)

_FINISH = text(
    """
    WITH ended AS (
        UPDATE sessions
           SET status = :status, failure_reason = :reason, updated_at = now()
         WHERE id = :session_id
    )
    INSERT INTO session_llm_usage (session_id, model, prompt_tokens, completion_tokens,
                                   requests, pages_total, pages_summarized, pages_cached,
                                   pages_failed)
    VALUES (:session_id, :model, :prompt_tokens, :completion_tokens, :requests, :pages_total,
            :pages_summarized, :pages_cached, :pages_failed)
    ON CONFLICT (session_id) DO UPDATE
       SET model = excluded.model, prompt_tokens = excluded.prompt_tokens,
           completion_tokens = excluded.completion_tokens, requests = excluded.requests,
           pages_total = excluded.pages_total, pages_summarized = excluded.pages_summarized,
           pages_cached = excluded.pages_cached, pages_failed = excluded.pages_failed,
           recorded_at = now()
    """
)

_STORE_MIND_MAP = text(
    """
    INSERT INTO mind_maps (session_id, central_topic, data, generator)
    VALUES (:session_id, :central_topic, CAST(:data AS jsonb), :generator)
    ON CONFLICT (session_id) DO NOTHING
    """
)

_STORED_CENTRAL_TOPIC = text("SELECT central_topic FROM mind_maps WHERE session_id = :session_id")


async def _lock_processing(conn: AsyncConnection, session_id: int) -> tuple[int, str | None] | None:
    """The session's user and its stored map's central topic (None without a map) if it is
    still processing, locking its row until commit; None when it is not processing."""
    row = (await conn.execute(_LOCK_PROCESSING, {"session_id": session_id})).one_or_none()
    return None if row is None else (row.user_id, row.central_topic)


async def complete_session(
    conn: AsyncConnection, *, session_id: int, mind_map: MindMapResult, usage: SessionUsage
) -> bool:
    """Store the mind map, mark the session completed and notify its user, atomically.

    Returns False (changing nothing) when the session is no longer processing, so a repeated
    call cannot store a second map or send a second notification.
    """
    if (locked := await _lock_processing(conn, session_id)) is None:
        return False
    await store_mind_map(conn, session_id, mind_map)
    await _finish_completed(conn, session_id, locked[0], mind_map.central_topic, usage)
    return True


async def store_mind_map(conn: AsyncConnection, session_id: int, mind_map: MindMapResult) -> None:
    """The session's mind map; the first one stored stays (retries cannot replace it)."""
    await conn.execute(
        _STORE_MIND_MAP,
        {
            "session_id": session_id,
            "central_topic": mind_map.central_topic,
            "data": json.dumps(mind_map.data),
            "generator": mind_map.generator,
        },
    )


async def stored_central_topic(conn: AsyncConnection, session_id: int) -> str | None:
    """The central topic of the session's stored mind map; None when it has none yet."""
    result = await conn.execute(_STORED_CENTRAL_TOPIC, {"session_id": session_id})
    topic: str | None = result.scalar_one_or_none()
    return topic


async def complete_session_with_stored_map(
    conn: AsyncConnection, *, session_id: int, usage: SessionUsage
) -> bool:
    """Mark the session completed and notify its user, atomically, its mind map stored before
    (by the activity that built it). False, changing nothing, when no longer processing."""
    if (locked := await _lock_processing(conn, session_id)) is None:
        return False
    user_id, central_topic = locked
    if central_topic is None:
        raise LookupError(f"session {session_id} has no stored mind map to complete with")
    await _finish_completed(conn, session_id, user_id, central_topic, usage)
    return True


async def _finish(
    conn: AsyncConnection,
    session_id: int,
    user_id: int,
    usage: SessionUsage,
    outcome: SessionStatus,
    detail: dict[str, str],
) -> None:
    """The session's end in the caller's transaction: its status (with the reason of a
    failure), its usage row, and its user's `session.<outcome>` notification (written once)."""
    await conn.execute(
        _FINISH,
        {
            "session_id": session_id,
            "status": outcome.value,
            "reason": detail.get("reason"),
            **asdict(usage),
        },
    )
    await record_notification(
        conn,
        user_id=user_id,
        kind=f"session.{outcome.value}",
        payload={"session_id": session_id, **detail},
        dedupe_key=f"session-{session_id}-{outcome.value}",
    )


async def _finish_completed(
    conn: AsyncConnection, session_id: int, user_id: int, central_topic: str, usage: SessionUsage
) -> None:
    detail = {"central_topic": central_topic}
    await _finish(conn, session_id, user_id, usage, SessionStatus.COMPLETED, detail)


async def fail_session(
    conn: AsyncConnection, *, session_id: int, reason: str, usage: SessionUsage
) -> bool:
    """Mark the session failed with `reason` and notify its user, atomically (see above)."""
    if (locked := await _lock_processing(conn, session_id)) is None:
        return False
    await _finish(conn, session_id, locked[0], usage, SessionStatus.FAILED, {"reason": reason})
    return True


async def failed_pages(
    conn: AsyncConnection, session_id: int, limit: int
) -> tuple[list[tuple[str, str]], int]:
    """Up to `limit` of the session's failed pages (URL, error) and how many failed in all."""
    rows = (
        await conn.execute(
            select(PageCrawl.url, PageCrawl.error, func.count().over())
            .where(PageCrawl.session_id == session_id, PageCrawl.outcome == "failed")
            .order_by(PageCrawl.url)
            .limit(limit)
        )
    ).all()
    total = rows[0][2] if rows else 0
    return [(url, error or "") for url, error, _ in rows], total
