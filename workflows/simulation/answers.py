"""Simulated patients' answers: normal ones that trip no alert rule, abnormal ones that trip one.

The journey workflow tests answer with these too, so the forecast and the tests agree on
what a normal and an abnormal answer is.
"""

from __future__ import annotations

from typing import Any

from suifang.core.pathways import (
    AlertRule,
    AllCondition,
    AnswerCondition,
    AnyCondition,
    Condition,
    IndicatorCondition,
    JourneyPlan,
    Question,
    Questionnaire,
    ScoreCondition,
)
from suifang.workflows.journey_rules import evaluate

__all__ = ["abnormal_answers", "normal_answers"]


def _candidates(question: Question) -> list[Any]:
    if question.type == "yes_no":
        return ["no", "yes"]
    if question.type == "choice":
        return [option.id for option in question.options]
    if question.type in ("scale", "number"):
        low = question.min if question.min is not None else 0
        high = question.max if question.max is not None else 300
        middle = round((low + high) / 2)
        return [str(v) for v in dict.fromkeys([middle, round(low + (high - low) * 0.3), low, high])]
    return ["还好"]


def normal_answers(questionnaire: Questionnaire, rules: list[AlertRule]) -> dict[str, Any]:
    """For each question, the first plausible answer that trips no alert rule."""
    answers: dict[str, Any] = {}
    questions = {q.id: q for q in questionnaire.questions}
    for question in questionnaire.questions:
        for candidate in _candidates(question):
            trial = {**answers, question.id: question.parse_answer(candidate)}
            indicators = {
                q.indicator: trial[q.id]
                for q in questionnaire.questions
                if q.indicator and isinstance(trial.get(q.id), float)
            }
            if not any(evaluate(rule.condition, trial, indicators, questions) for rule in rules):
                answers[question.id] = candidate
                break
    return answers


def _satisfy(condition: Condition, questionnaire: Questionnaire) -> dict[str, Any] | None:
    if isinstance(condition, AnswerCondition):
        if questionnaire.question(condition.question) is None:
            return None
        value = condition.value
        if condition.op == "gt":
            value = float(value) + 1
        elif condition.op == "lt":
            value = float(value) - 1
        elif condition.op == "in":
            value = value[0]
        return {condition.question: f"{value:g}" if isinstance(value, float) else str(value)}
    if isinstance(condition, IndicatorCondition):
        question = next(
            (q for q in questionnaire.questions if q.indicator == condition.indicator), None
        )
        if question is None:
            return None
        value = {"gt": condition.value + 1, "lt": condition.value - 0.5}.get(
            condition.op, condition.value
        )
        return {question.id: f"{value:g}"}
    if isinstance(condition, ScoreCondition):
        return _extreme_score(condition, questionnaire)
    if isinstance(condition, AnyCondition):
        return next((a for c in condition.any if (a := _satisfy(c, questionnaire))), None)
    if isinstance(condition, AllCondition):
        merged: dict[str, Any] = {}
        for inner in condition.all:
            part = _satisfy(inner, questionnaire)
            if part is None:
                return None
            merged.update(part)
        return merged
    return None


def _extreme_score(
    condition: ScoreCondition, questionnaire: Questionnaire
) -> dict[str, Any] | None:
    """Every item of the score answered to push the sum the way the rule looks (highest for
    gt/gte/eq/ne, lowest for lt/lte); None if even that does not trip it."""
    high = condition.op not in ("lt", "lte")
    answers: dict[str, Any] = {}
    for item in condition.score.sum:
        question = questionnaire.question(item)
        if question is None:
            return None
        want_high = high != (item in condition.score.reverse)
        scored = [
            (points, candidate)
            for candidate in _candidates(question)
            if (points := question.points(question.parse_answer(candidate))) is not None
        ]
        if not scored:
            return None
        answers[item] = (max if want_high else min)(scored)[1]
    parsed = {q: questionnaire.question(q).parse_answer(a) for q, a in answers.items()}  # type: ignore[union-attr]
    questions = {q.id: q for q in questionnaire.questions}
    return answers if evaluate(condition, parsed, {}, questions) else None


def abnormal_answers(
    plan: JourneyPlan, touchpoint_id: str, rule: AlertRule | None = None
) -> tuple[dict[str, Any], AlertRule] | None:
    """Normal answers except for what trips ``rule`` (default: the first that applies)."""
    planned = plan.touchpoint(touchpoint_id)
    if planned.questionnaire is None:
        return None
    for candidate in [rule] if rule else plan.alert_rules:
        if candidate.touchpoints is not None and touchpoint_id not in candidate.touchpoints:
            continue
        trigger = _satisfy(candidate.condition, planned.questionnaire)
        if trigger:
            return {**normal_answers(planned.questionnaire, []), **trigger}, candidate
    return None
