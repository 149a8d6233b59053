"""The offline provider produces real output from real text, with no network."""

from __future__ import annotations

from learning_platform.ai import offline
from learning_platform.jobs.ai_processing.ai import OfflineSessionAi, SummarizedPage

ARTICLE = (
    "Spaced repetition is a learning technique. Reviews of material are spaced over "
    "increasing intervals. The forgetting curve shows memory decays quickly without review. "
    "Spaced repetition counters the forgetting curve by scheduling each review just before "
    "recall would fail. Many flashcard programs implement spaced repetition. "
    "The weather was pleasant on the day the study began."
)


def test_sentence_ranking_prefers_central_sentences_and_keeps_order() -> None:
    chosen = offline.rank_sentences(ARTICLE, 2)
    assert len(chosen) == 2
    assert all("spaced repetition" in s.lower() or "forgetting" in s.lower() for s in chosen)
    assert not any("weather" in s for s in chosen)
    assert ARTICLE.index(chosen[0]) < ARTICLE.index(chosen[1])


def test_key_phrases_are_multiword_content_phrases() -> None:
    phrases = offline.key_phrases(ARTICLE, 5)
    assert "spaced repetition" in phrases
    assert "forgetting curve" in phrases
    assert not any(word in {"the", "is", "a"} for p in phrases for word in p.split())


async def test_mind_map_groups_pages_by_shared_phrases() -> None:
    ai = OfflineSessionAi()
    pages = []
    texts = {
        "http://a/1": ARTICLE,
        "http://a/2": "The forgetting curve was described by Ebbinghaus. The forgetting curve "
        "is steep in the first day. Ebbinghaus measured forgetting with nonsense syllables.",
        "http://a/3": "A mind map is a diagram. A mind map organises information around a "
        "central topic. Branches of a mind map hold related ideas.",
    }
    for url, text in texts.items():
        summary, usage = await ai.summarize_page(url=url, title=url[-1], text=text)
        assert summary.summary and summary.key_points and usage.requests == 0
        pages.append(SummarizedPage(url, summary.title, summary.summary, summary.key_points))

    mind_map, _ = await ai.build_mind_map(session_title="Memory", pages=pages)

    assert mind_map.central_topic == "Memory"
    covered = {url for branch in mind_map.branches for url in branch.page_urls}
    assert covered == set(texts)
    shared = [b for b in mind_map.branches if set(b.page_urls) == {"http://a/1", "http://a/2"}]
    assert shared and "forgetting curve" in shared[0].topic
    assert all(child.page_urls for b in mind_map.branches for child in b.children)
