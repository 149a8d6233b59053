"""Question generation from a source's text: through the LLM, or offline from the text itself."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from learning_platform.ai.llm import JsonLlm, LlmBackedAi, truncate_to_token_budget
from learning_platform.core.errors import ServiceError
from learning_platform.core.settings import Settings
from learning_platform.jobs.contracts import TokenUsage
from learning_platform.jobs.question_sets import offline_questions
from learning_platform.jobs.question_sets.offline_questions import DraftQuestion

log = logging.getLogger(__name__)

OFFLINE_GENERATOR = "offline-cloze"
MAX_CHOICES = 6


class NoQuestionsPossible(ServiceError, ValueError):
    """The text has no sentence a question can be made from."""


class QuestionAi(Protocol):
    generator: str

    async def make_questions(
        self, *, title: str, text: str, count: int, seed: int
    ) -> tuple[list[DraftQuestion], TokenUsage]: ...


def validate_questions(questions: Sequence[DraftQuestion], max_count: int) -> None:
    """ValueError naming the first problem (the LLM layer sends it back with a re-ask)."""
    if not questions:
        raise ValueError("no questions")
    if len(questions) > max_count:
        raise ValueError(f"{len(questions)} questions, at most {max_count} were asked for")
    prompts = [q.prompt.strip() for q in questions]
    if len(set(prompts)) != len(prompts):
        raise ValueError("two questions have the same prompt")
    for number, question in enumerate(questions, start=1):
        if not question.prompt.strip() or not question.answer.strip():
            raise ValueError(f"question {number} has an empty prompt or answer")
        if not question.choices:
            continue
        if not 2 <= len(question.choices) <= MAX_CHOICES:
            raise ValueError(f"question {number} has {len(question.choices)} choices, not 2-6")
        if len(set(question.choices)) != len(question.choices):
            raise ValueError(f"question {number} repeats a choice")
        if question.answer not in question.choices:
            raise ValueError(f"question {number}'s answer is not one of its choices")


QUESTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "questions": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "prompt": {"type": "string", "description": "The question"},
                    "choices": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "2-6 choices including the answer; [] for free text",
                    },
                    "answer": {"type": "string", "description": "Exactly one of the choices"},
                    "explanation": {"type": "string", "description": "Why, from the source"},
                },
                "required": ["prompt", "choices", "answer", "explanation"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["questions"],
    "additionalProperties": False,
}

QUESTIONS_SYSTEM = (
    "You write study questions about a learning source. Use only facts stated in the source. "
    "Prefer multiple-choice questions with four plausible choices; the answer must be one of "
    "the choices, written exactly the same. The explanation cites what the source says. "
    "Answer in the language of the source."
)


def questions_parser(max_count: int) -> Any:
    def parse(data: dict[str, Any]) -> list[DraftQuestion]:
        questions = [
            DraftQuestion(
                prompt=str(item["prompt"]),
                answer=str(item["answer"]),
                explanation=str(item["explanation"]),
                choices=[str(choice) for choice in item["choices"]],
            )
            for item in data["questions"]
        ]
        validate_questions(questions, max_count)
        return questions

    return parse


class LlmQuestionAi(LlmBackedAi):
    async def make_questions(
        self, *, title: str, text: str, count: int, seed: int
    ) -> tuple[list[DraftQuestion], TokenUsage]:
        body = truncate_to_token_budget(text, self._budget)
        return await self._llm.complete_json(
            system=QUESTIONS_SYSTEM,
            user=f"Write {count} questions.\nSource: {title}\n\nSource text:\n{body}",
            schema=QUESTIONS_SCHEMA,
            schema_name="question_set",
            parse=questions_parser(count),
        )


class OfflineQuestionAi:
    generator = OFFLINE_GENERATOR

    async def make_questions(
        self, *, title: str, text: str, count: int, seed: int
    ) -> tuple[list[DraftQuestion], TokenUsage]:
        questions = offline_questions.build_questions(text, count, seed=seed)
        if not questions:
            raise NoQuestionsPossible(
                "the source has no sentence to make a question from; "
                "it needs full sentences of text"
            )
        validate_questions(questions, count)
        return questions, TokenUsage(model=OFFLINE_GENERATOR)


def build_question_ai(settings: Settings, llm: JsonLlm | None) -> QuestionAi:
    if llm is None:
        log.info("question generation: offline cloze builder (OPENAI_API_KEY is not set)")
        return OfflineQuestionAi()
    return LlmQuestionAi(llm, settings.llm_page_token_budget)
