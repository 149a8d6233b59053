"""Questions built from the source text itself, with no network (the offline provider).

Each question is a sentence of the source with one of the text's key phrases blanked out
(cloze). When the text has enough other key phrases, three of them become the wrong choices
of a multiple-choice question; otherwise the blank is answered in free text.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from learning_platform.ai import offline

BLANK = "_____"
DISTRACTORS = 3
_CANDIDATE_PHRASES = 60


@dataclass(frozen=True)
class DraftQuestion:
    prompt: str
    answer: str
    explanation: str
    choices: list[str] = field(default_factory=list)


def build_questions(text: str, count: int, *, seed: int) -> list[DraftQuestion]:
    """Up to `count` questions about `text`, the most central sentences first.

    `seed` makes the choice order repeatable: a retried activity builds the same questions.
    """
    phrases = offline.key_phrases(text, _CANDIDATE_PHRASES)
    shuffle = random.Random(seed)
    questions: list[DraftQuestion] = []
    used_answers: set[str] = set()
    for sentence in offline.rank_sentences(text, len(offline.split_sentences(text))):
        blanked = _blank_out(sentence, phrases, used_answers)
        if blanked is None:
            continue
        prompt, answer = blanked
        used_answers.add(answer.lower())
        questions.append(
            DraftQuestion(
                prompt=f"Fill in the blank: {prompt}",
                answer=answer,
                explanation=f"The source says: {sentence}",
                choices=_choices(answer, sentence, phrases, shuffle),
            )
        )
        if len(questions) == count:
            break
    return questions


def _blank_out(sentence: str, phrases: list[str], used_answers: set[str]) -> tuple[str, str] | None:
    """The sentence with its best not-yet-asked key phrase blanked, and that phrase as written."""
    for phrase in phrases:
        if phrase in used_answers:
            continue
        matches = list(re.finditer(rf"(?<!\w){re.escape(phrase)}(?!\w)", sentence, re.I))
        # A phrase the sentence repeats would give its own answer away.
        if len(matches) != 1:
            continue
        start, end = matches[0].span()
        if len((sentence[:start] + sentence[end:]).split()) < 3:
            continue
        return sentence[:start] + BLANK + sentence[end:], _as_choice(sentence[start:end], start)
    return None


def _as_choice(written: str, start: int) -> str:
    """The phrase as a choice: a capital that only marks the sentence's start is dropped."""
    rest = written.split()[1:]
    if start == 0 and all(word.islower() for word in rest):
        return written[0].lower() + written[1:]
    return written


def _choices(answer: str, sentence: str, phrases: list[str], shuffle: random.Random) -> list[str]:
    """The answer and wrong choices of similar length that the sentence does not contain."""
    words = len(answer.split())
    wrong = [
        phrase
        for phrase in phrases
        if phrase != answer.lower() and phrase not in sentence.lower() and phrase not in answer
    ]
    wrong.sort(key=lambda phrase: abs(len(phrase.split()) - words))
    if len(wrong) < DISTRACTORS:
        return []
    choices = [answer, *wrong[:DISTRACTORS]]
    shuffle.shuffle(choices)
    return choices
