"""What the session job asks of AI: a summary per page and a mind map per session.

Two providers with one interface: `LlmSessionAi` (any OpenAI-compatible server) and
`OfflineSessionAi` (extractive, no network). `build_session_ai` picks one from the settings.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from learning_platform.ai import offline
from learning_platform.ai.llm import (
    InvalidOutputError,
    JsonLlm,
    LlmBackedAi,
    truncate_to_token_budget,
)
from learning_platform.core.settings import Settings
from learning_platform.jobs.contracts import TokenUsage

log = logging.getLogger(__name__)

OFFLINE_GENERATOR = "offline-extractive"
MAX_BRANCHES = 7


@dataclass
class PageSummary:
    title: str
    summary: str
    key_points: list[str]


@dataclass
class SummarizedPage:
    url: str
    title: str
    summary: str
    key_points: list[str]


@dataclass
class MindMapNode:
    topic: str
    page_urls: list[str] = field(default_factory=list)
    children: list[MindMapNode] = field(default_factory=list)


@dataclass
class MindMap:
    central_topic: str
    branches: list[MindMapNode]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SessionAi(Protocol):
    # Identifies the model or method; cached summaries are reused only by the same generator.
    generator: str

    async def summarize_page(
        self, *, url: str, title: str, text: str
    ) -> tuple[PageSummary, TokenUsage]: ...

    async def build_mind_map(
        self, *, session_title: str, pages: list[SummarizedPage]
    ) -> tuple[MindMap, TokenUsage]: ...


def _string(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    # Strict structured output wants every property required and no others allowed.
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _urls() -> dict[str, Any]:
    return {"type": "array", "items": _string("URL of a page from the input")}


PAGE_SUMMARY_SCHEMA = _object(
    {
        "title": _string("The page's title"),
        "summary": _string("Three to five sentences on what the page teaches"),
        "key_points": {"type": "array", "items": _string("A key concept, a few words")},
    }
)

MIND_MAP_SCHEMA = _object(
    {
        "central_topic": _string("What the whole session was about, a few words"),
        "branches": {
            "type": "array",
            "items": _object(
                {
                    "topic": _string("A main theme"),
                    "page_urls": _urls(),
                    "children": {
                        "type": "array",
                        "items": _object({"topic": _string("A sub-theme"), "page_urls": _urls()}),
                    },
                }
            ),
        },
    }
)

SUMMARY_SYSTEM = (
    "You summarise web pages a learner visited. Answer in the page's language. "
    "Reply with JSON only."
)
MIND_MAP_SYSTEM = (
    "You organise a learner's browsing session into a mind map: one central topic, "
    f"at most {MAX_BRANCHES} branches, each with sub-branches, and every branch or "
    "sub-branch linked to the URLs of the pages it comes from. Use only the given URLs. "
    "Reply with JSON only."
)


def parse_page_summary(data: dict[str, Any]) -> PageSummary:
    summary = str(data["summary"]).strip()
    if not summary:
        raise InvalidOutputError("summary is empty")
    return PageSummary(
        title=str(data["title"]).strip(),
        summary=summary,
        key_points=[str(point) for point in data["key_points"]],
    )


def mind_map_parser(known_urls: set[str]) -> Any:
    def parse(data: dict[str, Any]) -> MindMap:
        branches = [_parse_node(branch, known_urls) for branch in data["branches"]]
        if not branches:
            raise InvalidOutputError("the mind map has no branches")
        return MindMap(central_topic=str(data["central_topic"]).strip(), branches=branches)

    return parse


def _parse_node(data: dict[str, Any], known_urls: set[str]) -> MindMapNode:
    urls = [str(url) for url in data["page_urls"]]
    unknown = [url for url in urls if url not in known_urls]
    if unknown:
        # Not the URLs themselves: the problem is logged, and a final one ends up in the
        # session's failure reason, which travels through the workflow's history.
        raise InvalidOutputError(
            f"{len(unknown)} of the page_urls are not among the given pages; use only the "
            "pages' url values"
        )
    return MindMapNode(
        topic=str(data["topic"]).strip(),
        page_urls=urls,
        children=[_parse_node(child, known_urls) for child in data.get("children", [])],
    )


class LlmSessionAi(LlmBackedAi):
    async def summarize_page(
        self, *, url: str, title: str, text: str
    ) -> tuple[PageSummary, TokenUsage]:
        body = truncate_to_token_budget(text, self._budget)
        return await self._llm.complete_json(
            system=SUMMARY_SYSTEM,
            user=f"URL: {url}\nTitle: {title}\n\nPage text:\n{body}",
            schema=PAGE_SUMMARY_SCHEMA,
            schema_name="page_summary",
            parse=parse_page_summary,
        )

    async def build_mind_map(
        self, *, session_title: str, pages: list[SummarizedPage]
    ) -> tuple[MindMap, TokenUsage]:
        # The budget is shared by the pages; each summary is cut, so the JSON stays valid.
        per_page = max(100, self._budget // max(1, len(pages)))
        listing = json.dumps(
            [
                asdict(page) | {"summary": truncate_to_token_budget(page.summary, per_page)}
                for page in pages
            ],
            ensure_ascii=False,
        )
        return await self._llm.complete_json(
            system=MIND_MAP_SYSTEM,
            user=f"Session: {session_title}\n\nPages (JSON):\n{listing}",
            schema=MIND_MAP_SCHEMA,
            schema_name="mind_map",
            parse=mind_map_parser({page.url for page in pages}),
        )


class OfflineSessionAi:
    """Extractive summaries (ranked sentences) and mind maps grouped by shared key phrases."""

    generator = OFFLINE_GENERATOR

    async def summarize_page(
        self, *, url: str, title: str, text: str
    ) -> tuple[PageSummary, TokenUsage]:
        sentences = offline.rank_sentences(text, 4)
        summary = PageSummary(
            title=title or (sentences[0][:80] if sentences else url),
            summary=" ".join(sentences) or text[:500],
            key_points=offline.key_phrases(text, 6),
        )
        return summary, TokenUsage(model=OFFLINE_GENERATOR)

    async def build_mind_map(
        self, *, session_title: str, pages: list[SummarizedPage]
    ) -> tuple[MindMap, TokenUsage]:
        by_url = {page.url: page for page in pages}
        phrases = {
            page.url: page.key_points + offline.key_phrases(page.summary, 6) for page in pages
        }
        branches = [
            MindMapNode(
                topic=phrase,
                page_urls=urls,
                children=[MindMapNode(topic=by_url[url].title, page_urls=[url]) for url in urls],
            )
            for phrase, urls in offline.group_by_phrase(phrases, MAX_BRANCHES)
        ]
        everything = " ".join(f"{p.title}. {p.summary}" for p in pages)
        central = session_title or next(iter(offline.key_phrases(everything, 1)), "session")
        return MindMap(central_topic=central, branches=branches), TokenUsage(
            model=OFFLINE_GENERATOR
        )


def build_session_ai(settings: Settings, llm: JsonLlm | None) -> SessionAi:
    """The LLM provider, or the offline one without an LLM client; logs which, once per worker."""
    if llm is None:
        log.info("AI provider: offline extractive (OPENAI_API_KEY is not set)")
        return OfflineSessionAi()
    log.info(
        "AI provider: OpenAI-compatible",
        extra={"model": llm.model, "base_url": settings.openai_base_url or "api.openai.com"},
    )
    return LlmSessionAi(llm, settings.llm_page_token_budget)
