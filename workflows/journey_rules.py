"""Alert-rule conditions: whether a rule holds for a reply's answers and indicators.

:func:`evaluate` reads a condition as written; :func:`compile_condition` turns it into an
equivalent predicate with its constants converted once, which the plan index keeps for every
rule (rules are checked on every answer).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

from suifang.core.pathways import (
    AllCondition,
    AnswerCondition,
    AnyCondition,
    CompositeScore,
    Condition,
    IndicatorCondition,
    Question,
    ScoreCondition,
)

__all__ = ["Predicate", "compile_condition", "evaluate", "score_of"]

_NO_QUESTIONS: Mapping[str, Question] = {}

Predicate = Callable[[dict[str, Any], dict[str, float]], bool]


def _compare(op: str, actual: Any, expected: Any) -> bool:
    if op == "in":
        return actual in (expected if isinstance(expected, list | tuple | set) else [expected])
    if op in ("eq", "ne"):
        same = str(actual).lower() == str(expected).lower()
        if isinstance(actual, float) and isinstance(expected, int | float):
            same = actual == float(expected)
        return same if op == "eq" else not same
    try:
        left, right = float(actual), float(expected)
    except (TypeError, ValueError):
        return False
    return {"gt": left > right, "gte": left >= right, "lt": left < right, "lte": left <= right}[op]


def score_of(
    score: CompositeScore, answers: Mapping[str, Any], questions: Mapping[str, Question]
) -> float | None:
    """The composite score of these parsed answers, or None unless every item was answered
    with something that counts (a score of half a questionnaire is no score)."""
    total = 0.0
    for item in score.sum:
        question = questions.get(item)
        if question is None or item not in answers:
            return None
        points = question.points(answers[item])
        if points is None:
            return None
        if item in score.reverse:
            span = question.point_range()
            if span is None:
                return None
            points = span[0] + span[1] - points
        total += points
    return total


def evaluate(
    condition: Condition,
    answers: dict[str, Any],
    indicators: dict[str, float],
    questions: Mapping[str, Question] = _NO_QUESTIONS,
) -> bool:
    """Does ``condition`` hold for these parsed answers and indicator values? (Pure.)
    ``questions``: the plan's questions, by id, for composite scores."""
    if isinstance(condition, ScoreCondition):
        total = score_of(condition.score, answers, questions)
        return total is not None and _compare(condition.op, total, condition.value)
    if isinstance(condition, AnswerCondition):
        return condition.question in answers and _compare(
            condition.op, answers[condition.question], condition.value
        )
    if isinstance(condition, IndicatorCondition):
        return condition.indicator in indicators and _compare(
            condition.op, indicators[condition.indicator], condition.value
        )
    if isinstance(condition, AnyCondition):
        return any(evaluate(c, answers, indicators, questions) for c in condition.any)
    if isinstance(condition, AllCondition):
        return all(evaluate(c, answers, indicators, questions) for c in condition.all)
    return False


def _compiled_compare(op: str, expected: Any) -> Callable[[Any], bool]:
    """``lambda actual: _compare(op, actual, expected)``, with the work on ``expected`` done
    once. Same results, same exceptions."""
    if op == "in":
        members = expected if isinstance(expected, list | tuple | set) else [expected]
        return lambda actual: actual in members
    if op in ("eq", "ne"):
        expected_text = str(expected).lower()
        numeric = isinstance(expected, int | float)
        try:
            expected_number = float(expected) if numeric else 0.0
        except OverflowError:  # an int beyond float: fail when compared, as before
            return lambda actual: _compare(op, actual, expected)
        want = op == "eq"

        def equal(actual: Any) -> bool:
            if numeric and isinstance(actual, float):
                return (actual == expected_number) is want
            return (str(actual).lower() == expected_text) is want

        return equal
    if op not in _ORDERINGS:
        return lambda actual: _compare(op, actual, expected)
    try:
        right = float(expected)
    except (TypeError, ValueError):
        right = None
    except OverflowError:  # an int beyond float: fail when compared, as before
        return lambda actual: _compare(op, actual, expected)
    ordering = _ORDERINGS[op]

    def compare(actual: Any) -> bool:
        try:
            left = float(actual)
        except (TypeError, ValueError):
            return False
        return right is not None and ordering(left, right)

    return compare


_ORDERINGS: dict[str, Callable[[float, float], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


def compile_condition(
    condition: Condition, questions: Mapping[str, Question] = _NO_QUESTIONS
) -> Predicate:
    """``condition`` as a predicate equivalent to :func:`evaluate` — alert rules are checked on
    every answer, so their constants are converted once, when the plan is indexed."""
    if isinstance(condition, ScoreCondition):
        score, holds = condition.score, _compiled_compare(condition.op, condition.value)

        def scored(answers: dict[str, Any], indicators: dict[str, float]) -> bool:
            total = score_of(score, answers, questions)
            return total is not None and holds(total)

        return scored
    if isinstance(condition, AnswerCondition):
        question, holds = condition.question, _compiled_compare(condition.op, condition.value)
        return lambda answers, indicators: question in answers and holds(answers[question])
    if isinstance(condition, IndicatorCondition):
        indicator = condition.indicator
        holds = _compiled_compare(condition.op, condition.value)
        return lambda answers, indicators: indicator in indicators and holds(indicators[indicator])
    if isinstance(condition, AnyCondition):
        parts = tuple(compile_condition(c, questions) for c in condition.any)
        return lambda answers, indicators: any(p(answers, indicators) for p in parts)
    if isinstance(condition, AllCondition):
        parts = tuple(compile_condition(c, questions) for c in condition.all)
        return lambda answers, indicators: all(p(answers, indicators) for p in parts)
    return lambda answers, indicators: False
