"""Rows, a scripted LLM and workers for the ai-processing tests and benchmark."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fake_openai import RecordedRequest, Reply, example_for_schema


async def add_processing_session(
    engine: AsyncEngine, user_id: int, urls: Sequence[str], title: str = "Memory research"
) -> int:
    async with engine.begin() as conn:
        session_id = int(
            (
                await conn.execute(
                    text(
                        "INSERT INTO sessions (user_id, title, status, ended_at) "
                        "VALUES (:u, :t, 'processing', now()) RETURNING id"
                    ),
                    {"u": user_id, "t": title},
                )
            ).scalar_one()
        )
        if urls:
            await conn.execute(
                text(
                    "INSERT INTO page_visits (session_id, url, title, visited_at) "
                    "VALUES (:s, :u, :t, now() + make_interval(secs => :n))"
                ),
                [
                    {"s": session_id, "u": url, "t": f"visit {n}", "n": n}
                    for n, url in enumerate(urls)
                ],
            )
    return session_id


def summarising_responder(request: RecordedRequest) -> Reply:
    """Answers like a helpful model: page summaries from the page text it was sent, and a
    mind map whose branches link every page it was given."""
    if request.schema_name == "page_summary":
        title = re.search(r"^Title: (.*)$", request.user_text, re.MULTILINE)
        body = request.user_text.split("Page text:\n", 1)[-1]
        return Reply.json(
            {
                "title": title.group(1) if title else "",
                "summary": body[:200],
                "key_points": body.split()[:3],
            }
        )
    if request.schema_name == "mind_map":
        pages = json.loads(request.user_text.split("Pages (JSON):\n", 1)[1])
        urls = [page["url"] for page in pages]
        return Reply.json(
            {
                "central_topic": "How memory works",
                "branches": [
                    {
                        "topic": page["title"],
                        "page_urls": [page["url"]],
                        "children": [{"topic": "details", "page_urls": [page["url"]]}],
                    }
                    for page in pages
                ]
                + [{"topic": "all pages", "page_urls": urls, "children": []}],
            }
        )
    return Reply.json(example_for_schema(request.schema))


async def rows(engine: AsyncEngine, sql: str, **params: Any) -> list[Any]:
    async with engine.connect() as conn:
        return list(await conn.execute(text(sql), params))
