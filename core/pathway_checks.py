"""What a pathway means, checked: every rule can fire and every name refers to something.

:mod:`suifang.core.pathways` validates a template's *shape* (types, required fields, ids that
refer to each other). A template can have the right shape and still never do what its author
meant: ``value: hevy`` where the option is ``heavy``, an indicator spelt ``temprature``, a
fever rule at 380 for a 34–43 °C question, a channel called ``weixin``, ``{{ patient_name }}``
in a message (it would fail when sent), a department that does not exist. :func:`check_template`
finds those, each as a :class:`Finding` located at the field it is about, and warns where
something is legal but suspicious (an emergency rule with no advice for the patient).

What a template may name comes from a :class:`Vocabulary`: the indicator registry
(``templates/indicators.yaml`` plus ``SUIFANG_INDICATORS_FILE``), the registered channels, the
departments, the ticket categories and the message variables.
"""

from __future__ import annotations

import difflib
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jinja2
import jinja2.meta
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, select

from suifang.core.categories import CATEGORY_IDS
from suifang.core.config import Settings
from suifang.core.enums import Priority
from suifang.core.errors import ValidationFailed
from suifang.core.models import Department
from suifang.core.pathways import (
    AlertRule,
    AllCondition,
    AnswerCondition,
    AnyCondition,
    Condition,
    IndicatorCondition,
    LocalizedText,
    PathwayTemplate,
    Question,
    ScoreCondition,
    TouchpointSpec,
    locate,
    read_template,
)
from suifang.core.yaml_input import read_yaml

__all__ = [
    "MESSAGE_VARIABLES",
    "Finding",
    "Indicator",
    "IndicatorTarget",
    "Vocabulary",
    "check_template",
    "load_checked",
    "load_indicators",
    "load_pathways_dir",
    "vocabulary_of",
]

Loc = tuple[str | int, ...]

MESSAGE_VARIABLES: Mapping[str, str] = {
    "name": "how the patient is addressed (王阿姨, Mr Zhang)",
    "department": "the department caring for the patient",
    "hospital": "the hospital's name (SUIFANG_HOSPITAL_NAME)",
    "day": "days since discharge",
    "points": "the patient's follow-up points",
    "finding": "the encounter's findings: its diagnosis text; after a check-up, the abnormal "
    "results (HL7 ORU), e.g. 糖化血红蛋白 8.2 %(偏高,参考 4.0-6.0); empty when there is none",
}
"""What a pathway's texts may use: every message is rendered with exactly these."""

_INDICATORS_FILE = Path(__file__).resolve().parent.parent / "templates" / "indicators.yaml"
_TAGS_FILE = Path(__file__).resolve().parent.parent / "templates" / "tags.yaml"
_ORDERINGS = ("gt", "gte", "lt", "lte")


class IndicatorTarget(BaseModel):
    """Where a reading should be: at least ``at_least`` and below ``below`` (either may be
    omitted), e.g. systolic BP below 140, fasting glucose from 4.4 to below 7.0."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at_least: float | None = None
    below: float | None = None

    @model_validator(mode="after")
    def _a_bound(self) -> IndicatorTarget:
        if self.at_least is None and self.below is None:
            raise ValueError("a target needs at_least, below or both")
        if self.at_least is not None and self.below is not None and self.at_least >= self.below:
            raise ValueError("at_least must be below `below`")
        return self

    def holds(self, value: float) -> bool:
        """Whether ``value`` is within the target."""
        return (self.at_least is None or value >= self.at_least) and (
            self.below is None or value < self.below
        )

    def band(self, low: float | None, high: float | None) -> tuple[float, float]:
        """The target as a (low, high) band for a chart whose readings span low..high."""
        floor = self.at_least if self.at_least is not None else min(low or 0.0, self.below or 0.0)
        ceiling = self.below if self.below is not None else max(high or 0.0, floor)
        return floor, ceiling


class Indicator(BaseModel):
    """Something measured: its unit and the range a real reading falls in."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: LocalizedText
    unit: str = ""
    min: float
    max: float
    loinc: str | None = Field(None, pattern=r"^[0-9]{1,7}-[0-9]$")
    """The standard LOINC code, where one exists: how a lab result (HL7 OBX-3, FHIR) is known."""
    target: IndicatorTarget | None = None
    """Where a controlled patient's readings are (trends and reports judge control by it)."""
    controlled_share: float = Field(0.7, gt=0, le=1)
    """The share of readings within ``target`` that counts as controlled (e.g. BP: 70 %)."""


class _IndicatorFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1]
    indicators: dict[str, Indicator] = Field(default_factory=dict)


def load_indicators(extra: Path | None = None) -> dict[str, Indicator]:
    """The shipped indicator registry, with ``extra``'s entries merged over it."""
    registry = _read_indicators(_INDICATORS_FILE)
    if extra is not None:
        registry.update(_read_indicators(extra))
    return registry


def _read_indicators(path: Path) -> dict[str, Indicator]:
    try:
        _, data = read_yaml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationFailed(f"{path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ValidationFailed(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    try:
        parsed = _IndicatorFile.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{path}: {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        ]
        raise ValidationFailed("invalid indicator registry\n  " + "\n  ".join(problems)) from None
    for name, indicator in parsed.indicators.items():
        if indicator.min >= indicator.max:
            raise ValidationFailed(f"{path}: indicators.{name}: min must be below max")
    return dict(parsed.indicators)


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """What a template may name. ``None`` for channels or departments: not checked (e.g. no
    database to ask)."""

    indicators: Mapping[str, Indicator]
    channels: frozenset[str] | None = None
    departments: frozenset[str] | None = None
    categories: frozenset[str] = field(default_factory=lambda: frozenset(CATEGORY_IDS))
    variables: frozenset[str] = field(default_factory=lambda: frozenset(MESSAGE_VARIABLES))
    tags: frozenset[str] | None = None
    """The auto-tags the tag rules can give (``None``: not checked)."""


@dataclass(frozen=True, slots=True)
class Finding:
    loc: Loc
    message: str
    hint: str | None = None
    warning: bool = False

    def text(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


def check_template(template: PathwayTemplate, vocabulary: Vocabulary) -> list[Finding]:
    """Every problem in ``template`` that its shape does not show, errors and warnings."""
    return [
        *_check_indicators(template, vocabulary),
        *_check_rules(template, vocabulary),
        *_check_names(template, vocabulary),
        *_check_texts(template, vocabulary),
        *_check_schedule(template),
    ]


# --------------------------------------------------------------------------- pieces


def _touchpoints(template: PathwayTemplate) -> Iterator[tuple[Loc, TouchpointSpec]]:
    for index, touchpoint in enumerate(template.touchpoints):
        yield ("touchpoints", index), touchpoint
    for name, variant in template.variants.items():
        for index, touchpoint in enumerate(variant.add_touchpoints):
            yield ("variants", name, "add_touchpoints", index), touchpoint


def _rules(template: PathwayTemplate) -> Iterator[tuple[Loc, AlertRule]]:
    for index, rule in enumerate(template.alert_rules):
        yield ("alert_rules", index), rule
    for name, variant in template.variants.items():
        for index, rule in enumerate(variant.alert_rules):
            yield ("variants", name, "alert_rules", index), rule


def _conditions(condition: Condition, loc: Loc) -> Iterator[tuple[Loc, Condition]]:
    yield loc, condition
    if isinstance(condition, AnyCondition):
        for index, inner in enumerate(condition.any):
            yield from _conditions(inner, (*loc, "any", index))
    elif isinstance(condition, AllCondition):
        for index, inner in enumerate(condition.all):
            yield from _conditions(inner, (*loc, "all", index))


def _questions(template: PathwayTemplate) -> dict[str, Question]:
    return {q.id: q for qn in template.questionnaires.values() for q in qn.questions}


def _known(names: Iterable[str], given: str) -> str:
    """A hint for an unknown name: the close one meant, else what there is."""
    listed = sorted(names)
    close = difflib.get_close_matches(given, listed, n=1, cutoff=0.7)
    if close:
        return f"did you mean {close[0]!r}?"
    shown = ", ".join(listed[:12]) + (", …" if len(listed) > 12 else "")
    return f"known: {shown}"


def _check_indicators(template: PathwayTemplate, vocabulary: Vocabulary) -> Iterator[Finding]:
    for questionnaire_id, questionnaire in template.questionnaires.items():
        for index, question in enumerate(questionnaire.questions):
            if question.indicator and question.indicator not in vocabulary.indicators:
                yield Finding(
                    ("questionnaires", questionnaire_id, "questions", index, "indicator"),
                    f"unknown indicator {question.indicator!r}",
                    _known(vocabulary.indicators, question.indicator),
                )


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _values(condition: AnswerCondition | IndicatorCondition) -> list[Any]:
    value = condition.value
    if condition.op == "in" and isinstance(value, list | tuple):
        return list(value)
    return [value]


def _check_rules(template: PathwayTemplate, vocabulary: Vocabulary) -> Iterator[Finding]:
    questions = _questions(template)
    asked = _asked_questions(template)
    for loc, rule in _rules(template):
        if rule.category not in vocabulary.categories:
            yield Finding(
                (*loc, "category"),
                f"alert rule {rule.id!r}: unknown category {rule.category!r}",
                _known(vocabulary.categories, rule.category),
            )
        if (
            rule.department is not None
            and vocabulary.departments is not None
            and rule.department not in vocabulary.departments
        ):
            yield Finding(
                (*loc, "department"),
                f"alert rule {rule.id!r}: unknown department {rule.department!r}",
                _known(vocabulary.departments, rule.department),
            )
        if rule.priority is Priority.EMERGENCY and rule.advice is None:
            yield Finding(
                (*loc, "advice"),
                f"alert rule {rule.id!r} is an emergency but tells the patient nothing",
                "add advice: what to do now, e.g. call 120",
                warning=True,
            )
        unreachable = set()
        for where, condition in _conditions(rule.condition, (*loc, "if")):
            if isinstance(condition, AnswerCondition):
                question = questions.get(condition.question)
                if question is None:
                    continue  # the template's own validation names it
                if condition.question not in asked:
                    unreachable.add(condition.question)
                yield from _check_answer_condition(rule, condition, question, where, vocabulary)
            elif isinstance(condition, IndicatorCondition):
                yield from _check_indicator_condition(rule, condition, where, vocabulary)
            elif isinstance(condition, ScoreCondition):
                unreachable |= {q for q in condition.score.sum if q in questions and q not in asked}
                yield from _check_score_condition(rule, condition, questions, where)
        yield from _check_rule_touchpoints(template, rule, loc, questions)
        if unreachable:
            yield Finding(
                (*loc, "if"),
                f"alert rule {rule.id!r} can never fire: question "
                f"{', '.join(repr(q) for q in sorted(unreachable))} is in no questionnaire a "
                "touchpoint sends",
            )


def _asked_questions(template: PathwayTemplate) -> set[str]:
    sent = {t.questionnaire for _, t in _touchpoints(template) if t.questionnaire}
    return {q.id for name in sent for q in template.questionnaires[name].questions}


def _check_answer_condition(
    rule: AlertRule,
    condition: AnswerCondition,
    question: Question,
    loc: Loc,
    vocabulary: Vocabulary,
) -> Iterator[Finding]:
    about = f"alert rule {rule.id!r}"
    values = _values(condition)
    if question.type == "yes_no":
        for value in values:
            if str(value).lower() not in ("yes", "no"):
                yield Finding(
                    (*loc, "value"),
                    f"{about}: {value!r} is not an answer to yes/no question {question.id!r}",
                    'use "yes" or "no"',
                )
        if condition.op in _ORDERINGS:
            yield Finding(
                (*loc, "op"), f"{about}: {condition.op} cannot compare yes/no answers", "use eq"
            )
    elif question.type == "choice":
        options = [o.id for o in question.options]
        for value in values:
            if str(value) not in options:
                yield Finding(
                    (*loc, "value"),
                    f"{about}: {value!r} is not an option of question {question.id!r}",
                    f"options: {', '.join(options)}",
                )
        if condition.op in _ORDERINGS:
            yield Finding(
                (*loc, "op"),
                f"{about}: {condition.op} cannot compare the options of {question.id!r}",
                "use eq, ne or in",
            )
    elif question.type in ("number", "scale"):
        low, high = question.min, question.max
        indicator = vocabulary.indicators.get(question.indicator or "")
        if low is None and indicator is not None:
            low = indicator.min
        if high is None and indicator is not None:
            high = indicator.max
        for value in values:
            yield from _check_threshold(
                about, question.id, "question", condition.op, value, low, high, loc
            )


def _check_indicator_condition(
    rule: AlertRule, condition: IndicatorCondition, loc: Loc, vocabulary: Vocabulary
) -> Iterator[Finding]:
    indicator = vocabulary.indicators.get(condition.indicator)
    if indicator is None:
        yield Finding(
            (*loc, "indicator"),
            f"alert rule {rule.id!r}: unknown indicator {condition.indicator!r}",
            _known(vocabulary.indicators, condition.indicator),
        )
        return
    for value in _values(condition):
        yield from _check_threshold(
            f"alert rule {rule.id!r}",
            condition.indicator,
            "indicator",
            condition.op,
            value,
            indicator.min,
            indicator.max,
            loc,
        )


def _check_threshold(
    about: str,
    subject: str,
    kind: str,
    op: str,
    value: Any,
    low: float | None,
    high: float | None,
    loc: Loc,
) -> Iterator[Finding]:
    number = _number(value)
    if number is None:
        yield Finding(
            (*loc, "value"),
            f"{about}: {value!r} is not a number, and {kind} {subject!r} is answered with one",
            "write the number alone, e.g. 38.0",
        )
        return
    outside = (low is not None and number < low) or (high is not None and number > high)
    if outside:
        span = f"{low:g}–{high:g}" if low is not None and high is not None else ""
        never = (
            (op in ("gt", "gte", "eq") and high is not None and number > high)
            or (op in ("lt", "lte", "eq") and low is not None and number < low)
            or op == "in"
        )
        yield Finding(
            (*loc, "value"),
            f"{about}: {number:g} is outside the range of {kind} {subject!r} ({span}): the rule "
            + ("can never fire" if never else "fires on every answer"),
            "check the number and its unit",
        )


def _check_score_condition(
    rule: AlertRule, condition: ScoreCondition, questions: Mapping[str, Question], loc: Loc
) -> Iterator[Finding]:
    """Every item must count points (a choice with a score on every option, yes/no, a scale
    or number with its range), and the threshold must be a sum the items can reach."""
    low = high = 0.0
    for index, item in enumerate(condition.score.sum):
        question = questions.get(item)
        if question is None:
            return  # the template's own validation names it
        span = question.point_range()
        if span is None:
            yield Finding(
                (*loc, "score", "sum", index),
                f"alert rule {rule.id!r}: question {item!r} counts no points in a score",
                "give every option a score, or a scale's min and max; text answers never count",
            )
            return
        low, high = low + span[0], high + span[1]
    yield from _check_threshold(
        f"alert rule {rule.id!r}",
        "+".join(condition.score.sum) if len(condition.score.sum) <= 3 else "the score",
        "sum",
        condition.op,
        condition.value,
        low,
        high,
        loc,
    )


def _check_rule_touchpoints(
    template: PathwayTemplate, rule: AlertRule, loc: Loc, questions: Mapping[str, Question]
) -> Iterator[Finding]:
    if not rule.touchpoints:
        return
    wanted = {
        question
        for _, c in _conditions(rule.condition, ())
        for question in (
            [c.question]
            if isinstance(c, AnswerCondition)
            else c.score.sum
            if isinstance(c, ScoreCondition)
            else []
        )
        if question in questions
    }
    if not wanted:
        return
    touchpoints = {t.id: t for _, t in _touchpoints(template)}
    asked = set()
    for touchpoint_id in rule.touchpoints:
        touchpoint = touchpoints.get(touchpoint_id)
        if touchpoint is not None and touchpoint.questionnaire:
            asked |= {q.id for q in template.questionnaires[touchpoint.questionnaire].questions}
    if not wanted & asked:
        yield Finding(
            (*loc, "touchpoints"),
            f"alert rule {rule.id!r} can never fire: none of its touchpoints asks "
            f"{', '.join(repr(q) for q in sorted(wanted))}",
        )


def _check_names(template: PathwayTemplate, vocabulary: Vocabulary) -> Iterator[Finding]:
    if vocabulary.channels is not None:
        lists: list[tuple[Loc, list[str] | None]] = [(("channels",), template.channels)]
        lists += [((*loc, "channels"), t.channels) for loc, t in _touchpoints(template)]
        lists += [(("variants", n, "channels"), v.channels) for n, v in template.variants.items()]
        for loc, channels in lists:
            for index, channel in enumerate(channels or ()):
                if channel not in vocabulary.channels:
                    yield Finding(
                        (*loc, index),
                        f"unknown channel {channel!r}",
                        _known(vocabulary.channels, channel),
                    )
    if vocabulary.departments is not None:
        if template.department and template.department not in vocabulary.departments:
            yield Finding(
                ("department",),
                f"unknown department {template.department!r}",
                _known(vocabulary.departments, template.department),
            )
        for index, department in enumerate(template.match.departments):
            if department not in vocabulary.departments:
                yield Finding(
                    ("match", "departments", index),
                    f"unknown department {department!r}",
                    _known(vocabulary.departments, department),
                )
    if vocabulary.tags is not None:
        named: list[tuple[Loc, str]] = [
            (("match", "tags", index), tag) for index, tag in enumerate(template.match.tags)
        ]
        named += [
            (("variants", name), name.removeprefix("tag:"))
            for name in template.variants
            if name.startswith("tag:")
        ]
        for loc, tag in named:
            if tag not in vocabulary.tags:
                # A tag no rule gives would never match: a typo, most likely.
                yield Finding(
                    loc, f"unknown tag {tag!r} (templates/tags.yaml)", _known(vocabulary.tags, tag)
                )


_JINJA = jinja2.Environment(autoescape=False)  # noqa: S701 -- parsed only, never rendered


def _texts(value: Any, loc: Loc) -> Iterator[tuple[Loc, str]]:
    """Every localized text in a template, with where it is."""
    if isinstance(value, LocalizedText):
        yield (*loc, "zh-CN"), value.zh_cn
        yield (*loc, "en"), value.en
    elif isinstance(value, BaseModel):
        for name, info in type(value).model_fields.items():
            yield from _texts(getattr(value, name), (*loc, info.alias or name))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _texts(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _texts(item, (*loc, index))


def _check_texts(template: PathwayTemplate, vocabulary: Vocabulary) -> Iterator[Finding]:
    for loc, text in _texts(template, ()):
        used = jinja2.meta.find_undeclared_variables(_JINJA.parse(text))
        for name in sorted(used - vocabulary.variables):
            yield Finding(
                loc,
                f"unknown variable {{{{ {name} }}}}: the message would fail when sent",
                f"variables: {', '.join(sorted(vocabulary.variables))}",
            )


def _check_schedule(template: PathwayTemplate) -> Iterator[Finding]:
    days = Counter(t.day for t in template.touchpoints if t.day is not None)
    for index, touchpoint in enumerate(template.touchpoints):
        if touchpoint.day is not None and days[touchpoint.day] > 1 and touchpoint.expects_answer:
            twins = [
                t.id
                for t in template.touchpoints
                if t.day == touchpoint.day and t.id != touchpoint.id and t.expects_answer
            ]
            if twins:
                yield Finding(
                    ("touchpoints", index, "day"),
                    f"touchpoint {touchpoint.id!r} asks on day {touchpoint.day}, as "
                    f"{', '.join(repr(t) for t in twins)} does: the patient gets two questions "
                    "the same day",
                    "move one, or merge them",
                    warning=True,
                )
    sent = {t.questionnaire for _, t in _touchpoints(template) if t.questionnaire}
    for name in template.questionnaires:
        if name not in sent:
            yield Finding(
                ("questionnaires", name),
                f"questionnaire {name!r} is never sent",
                "name it in a touchpoint's questionnaire, or remove it",
                warning=True,
            )


def vocabulary_of(engine: Engine, settings: Settings, channels: Iterable[str]) -> Vocabulary:
    """What a template may name on this platform: its channels, departments (when the
    database can say), indicators."""
    try:
        with Session(engine) as session:
            departments: frozenset[str] | None = frozenset(
                session.exec(select(Department.code)).all()
            )
    except SQLAlchemyError:
        departments = None  # not migrated yet: `pathways validate` checks them later
    return Vocabulary(
        indicators=load_indicators(settings.indicators_file),
        channels=frozenset(channels),
        departments=departments,
        tags=tag_ids(settings.tags_file),
    )


def tag_ids(extra: Path | None = None) -> frozenset[str] | None:
    """The ids of the shipped auto-tags and ``extra``'s; ``None`` when a file cannot be read
    (the tag rules' own loader says what is wrong with it)."""
    ids: set[str] = set()
    for path in (_TAGS_FILE, extra):
        if path is None:
            continue
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            ids |= set(data["tags"])
        except (OSError, yaml.YAMLError, TypeError, KeyError):
            return None
    return frozenset(ids)


def load_checked(path: Path, vocabulary: Vocabulary) -> PathwayTemplate:
    """A template file that is valid in shape and in meaning (warnings allowed), else every
    error, one line each."""
    template, root = read_template(path)
    errors = [
        locate(path, root, f.loc, f.text())
        for f in check_template(template, vocabulary)
        if not f.warning
    ]
    if errors:
        raise ValidationFailed("invalid pathway template\n  " + "\n  ".join(errors))
    return template


def load_pathways_dir(
    directory: Path, vocabulary: Vocabulary
) -> list[tuple[Path, PathwayTemplate]]:
    """Every ``*.yaml``/``*.yml`` under a hospital's pathway directory, checked."""
    if not directory.is_dir():
        raise ValidationFailed(f"SUIFANG_PATHWAYS_DIR: {directory} is not a directory")
    return [(f, load_checked(f, vocabulary)) for f in sorted(directory.rglob("*.y*ml"))]
