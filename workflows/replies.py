"""A patient's text reply to a questionnaire: which questions it answers, and what else it says.

Patients answer in every shape: ``否,1,2``, ``chest_pain=no``, ``1.否 2.每天按时吃``, or
``没有，但是伤口一直在流血``. :func:`split_reply` takes out what answers a question and leaves
the rest as free text — which is never dropped: the journey triages it like any message
(and the answers of ``text`` questions with it). Pure and deterministic: the journey core
calls it inside the workflow.
"""

from __future__ import annotations

import re
from typing import Any

from suifang.core.pathways import Question, Questionnaire

__all__ = ["parse_reply", "split_reply"]

_SEPARATORS = str.maketrans({"，": ",", "、": ",", "；": ",", ";": ",", "\n": ",", "\t": ","})
_PAIR = re.compile(r"(?<![\w])([a-z][a-z0-9_]*)\s*[=:：]\s*([^,，;；\s]+)", re.IGNORECASE)
_NUMBERED = re.compile(r"(?:^|(?<=[\s,，;；。.]))(\d{1,2})\s*[.、:：)）]\s*([^,，;；\s。]+)")
_TOKEN = re.compile(r"[^,\s]+")


def _parses(question: Question, raw: str) -> bool:
    try:
        question.parse_answer(raw)
    except ValueError:
        return False
    return True


def _structured(question: Question) -> bool:
    """A question whose answer is a value (yes/no, a choice, a number), not a sentence."""
    return question.type != "text"


def split_reply(text: str, questionnaire: Questionnaire) -> tuple[dict[str, str], str]:
    """``(answers by question id, the rest of the text)``.

    In order of trust: ``id=value`` pairs; numbered answers (``1.否 2.是``); the whole reply
    as answers in question order (every token must parse, as :func:`parse_reply` requires);
    and a leading run of answers in question order (at least two, or the only question) —
    ``否,是,伤口有点红`` answers two questions and leaves ``伤口有点红``. A ``text`` question
    is answered only by ``id=…``; free text is never taken for its answer.
    """
    cleaned = text.translate(_SEPARATORS).strip()
    if not cleaned:
        return {}, ""
    questions = list(questionnaire.questions)
    by_id = {q.id: q for q in questions}
    answers: dict[str, str] = {}
    rest = cleaned

    def take(spans: list[tuple[int, int]]) -> None:
        nonlocal rest
        for start, end in sorted(spans, reverse=True):
            rest = rest[:start] + " " + rest[end:]

    spans: list[tuple[int, int]] = []
    for match in _PAIR.finditer(cleaned):
        question = by_id.get(match.group(1).lower()) or by_id.get(match.group(1))
        if question is not None and _parses(question, match.group(2)):
            answers[question.id] = match.group(2)
            spans.append(match.span())
    take(spans)
    if not answers:
        spans = []
        for match in _NUMBERED.finditer(rest):
            number = int(match.group(1))
            if 1 <= number <= len(questions):
                question = questions[number - 1]
                if _structured(question) and _parses(question, match.group(2)):
                    answers[question.id] = match.group(2)
                    spans.append(match.span())
        take(spans)
    if not answers:
        whole = parse_reply(cleaned, questionnaire)
        if whole is not None and all(_structured(by_id[q]) for q in whole):
            return whole, ""
        answers, rest = _leading_answers(cleaned, questions)
    return answers, _tidy(rest)


def _leading_answers(text: str, questions: list[Question]) -> tuple[dict[str, str], str]:
    tokens = list(_TOKEN.finditer(text))
    answered: dict[str, str] = {}
    end = 0
    for token, question in zip(tokens, questions, strict=False):
        if not _structured(question) or not _parses(question, token.group()):
            break
        answered[question.id] = token.group()
        end = token.end()
    if len(answered) >= min(2, len(questions)) and answered:
        return answered, text[end:]
    return {}, text


def _tidy(text: str) -> str:
    """What is left once answers are taken out, its own punctuation kept (triage reads
    clauses: 没有胸痛,但是… must stay two), emptied separators folded away."""
    text = re.sub(r"\s*,(?:\s*,)*\s*", ",", text)
    return re.sub(r"\s+", " ", text).strip(" ,.，。")


def parse_reply(text: str, questionnaire: Questionnaire) -> dict[str, str] | None:
    """A reply that is *only* answers (``否,1,2`` or ``chest_pain=no``) → raw answers by
    question id, or None.

    Answers are positional, in question order; a reply that gives only the required
    questions fills those. Every value must parse for its question, else the reply is not
    an answer (it is a free-text message).
    """
    cleaned = text.translate(_SEPARATORS).strip()
    if not cleaned:
        return None
    answers: dict[str, Any]
    if "=" in cleaned:
        pairs = [part.split("=", 1) for part in cleaned.split(",") if "=" in part]
        answers = {k.strip(): v.strip() for k, v in pairs}
    else:
        tokens = [t for t in cleaned.replace(",", " ").split() if t]
        questions = questionnaire.questions
        if len(tokens) != len(questions):
            questions = [q for q in questionnaire.questions if q.required]
        if len(tokens) != len(questions):
            return None
        answers = {q.id: token for q, token in zip(questions, tokens, strict=True)}
    for question_id, raw in answers.items():
        question = questionnaire.question(question_id)
        if question is None:
            return None
        try:
            question.parse_answer(raw)
        except ValueError:
            return None
    return answers
