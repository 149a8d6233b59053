"""Extractive text tools that need no network: sentence ranking and key-phrase extraction.

The offline provider (`session_ai.OfflineSessionAi`) builds summaries and mind maps from these
when no OPENAI_API_KEY is set, so air-gapped installations still get useful output.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

# fmt: off
STOP_WORDS = frozenset([
    "a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and", "any",
    "are", "as", "at", "be", "because", "been", "before", "being", "below", "between", "both",
    "but", "by", "can", "could", "did", "do", "does", "doing", "down", "during", "e.g", "each",
    "either", "else", "etc", "even", "ever", "every", "few", "first", "for", "from", "further",
    "had", "has", "have", "having", "he", "her", "here", "hers", "herself", "him", "himself", "his",
    "how", "however", "i", "i.e", "if", "in", "into", "is", "it", "its", "itself", "just", "least",
    "less", "like", "made", "make", "many", "may", "me", "might", "more", "most", "much", "must",
    "my", "myself", "neither", "new", "no", "nor", "not", "now", "of", "off", "often", "on", "once",
    "one", "only", "or", "other", "others", "our", "ours", "ourselves", "out", "over", "own", "per",
    "rather", "same", "second", "several", "she", "should", "since", "so", "some", "such", "than",
    "that", "the", "their", "theirs", "them", "themselves", "then", "there", "these", "they",
    "this", "those", "though", "three", "through", "thus", "to", "too", "two", "under", "until",
    "up", "upon", "us", "used", "using", "very", "via", "was", "we", "well", "were", "what", "when",
    "where", "whether", "which", "while", "who", "whom", "whose", "why", "will", "with", "within",
    "without", "would", "yet", "you", "your", "yours", "yourself", "yourselves",
])
# fmt: on

# Full-width marks end CJK sentences.
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|\n{1,}")  # noqa: RUF001
_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*", re.UNICODE)  # noqa: RUF001
_PHRASE_BREAK = re.compile(r"[,.;:!?()\[\]{}\"“”«»/|\n。！？、]+")  # noqa: RUF001


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if len(s.strip().split()) >= 3]


def content_words(text: str) -> list[str]:
    return [w for w in (m.lower() for m in _WORD.findall(text)) if _is_content_word(w)]


def _is_content_word(word: str) -> bool:
    return word not in STOP_WORDS and (len(word) > 2 or not word.isascii())


def rank_sentences(text: str, count: int) -> list[str]:
    """The `count` most central sentences, in their original order.

    A sentence scores the mean document frequency of its content words (so sentences about
    the text's recurring subject win), with a small bonus for coming early, as leads do.
    """
    sentences = split_sentences(text)
    if len(sentences) <= count:
        return sentences
    frequency = Counter(content_words(text))
    top = max(frequency.values(), default=1)

    def score(index: int) -> float:
        words = content_words(sentences[index])
        if not words:
            return 0.0
        centrality = sum(frequency[w] / top for w in words) / math.sqrt(len(words))
        return centrality * (1 + 0.5 / (1 + index))

    chosen = sorted(range(len(sentences)), key=score, reverse=True)[:count]
    return [sentences[i] for i in sorted(chosen)]


def key_phrases(text: str, count: int, max_words: int = 3) -> list[str]:
    """The `count` best key phrases of `text`, lower-case, best first.

    Candidates are the n-grams of content words that stand together between stop words and
    punctuation; repeated and longer ones score higher, and a phrase inside a better one is
    dropped, so "spaced repetition" wins over "spaced" and "repetition".
    """
    occurrences: Counter[tuple[str, ...]] = Counter()
    for run in _content_runs(text):
        for size in range(1, max_words + 1):
            occurrences.update(tuple(run[i : i + size]) for i in range(len(run) - size + 1))
    ranked = sorted(occurrences, key=lambda g: (-occurrences[g] * math.sqrt(len(g)), -len(g), g))
    chosen: list[str] = []
    for gram in ranked:
        phrase = " ".join(gram)
        if not any(f" {phrase} " in f" {better} " for better in chosen):
            chosen.append(phrase)
        if len(chosen) == count:
            break
    return chosen


def _content_runs(text: str) -> list[list[str]]:
    runs: list[list[str]] = []
    for chunk in _PHRASE_BREAK.split(text):
        run: list[str] = []
        for word in (w.lower() for w in _WORD.findall(chunk)):
            if _is_content_word(word):
                run.append(word)
            elif run:
                runs.append(run)
                run = []
        if run:
            runs.append(run)
    return runs


def group_by_phrase(
    phrases_by_item: Mapping[str, Sequence[str]], max_groups: int
) -> list[tuple[str, list[str]]]:
    """Greedy cover: repeatedly pick the phrase shared by most not-yet-covered items.

    Returns (phrase, items) groups; items that share no phrase with another end up in groups
    of their own best phrase, so every item appears somewhere.
    """
    items_by_phrase: dict[str, list[str]] = defaultdict(list)
    for item, phrases in phrases_by_item.items():
        for phrase in dict.fromkeys(phrases):
            items_by_phrase[phrase].append(item)
    uncovered = set(phrases_by_item)
    groups: list[tuple[str, list[str]]] = []
    while uncovered and items_by_phrase and len(groups) < max_groups:
        phrase = max(
            items_by_phrase,
            key=lambda p: (len(uncovered.intersection(items_by_phrase[p])), -len(p), p),
        )
        if not uncovered.intersection(items_by_phrase[phrase]):
            break
        groups.append((phrase, items_by_phrase.pop(phrase)))
        uncovered.difference_update(groups[-1][1])
    if uncovered:
        groups.append(("other pages", sorted(uncovered)))
    return groups
