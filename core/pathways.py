"""Pathway templates: the YAML administrators write, its validation, and the resolved plan.

A template (``templates/pathways/<id>.yaml``) says what to ask whom, when, over which channel
and what counts as abnormal. It is validated by the pydantic models below; an invalid file
is refused with ``file:line: field: reason``. At enrollment a template plus the patient's
risk tier and special groups resolve to a :class:`JourneyPlan` — plain data handed to the
journey workflow, so a running journey keeps the version it started with whatever happens
to the files later.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable, Collection, Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import jinja2
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from suifang.core.enums import Priority, RiskTier, Tier
from suifang.core.errors import NotFoundError, ValidationFailed
from suifang.core.risk_criteria import RiskCriteria
from suifang.core.yaml_input import read_yaml

__all__ = [
    "LOCALES",
    "AlertRule",
    "CompositeScore",
    "Condition",
    "JourneyPlan",
    "LocalizedText",
    "PathwayCatalog",
    "PathwayRegistry",
    "PathwayTemplate",
    "PlannedTouchpoint",
    "Question",
    "Questionnaire",
    "Recurrence",
    "ScoreCondition",
    "SendWindow",
    "TouchpointSpec",
    "Variant",
    "check_groups",
    "load_template",
    "locate",
    "parse_duration",
    "parse_template",
    "read_template",
    "resolve_plan",
]

LOCALES = ("zh-CN", "en")
SPECIAL_GROUPS = ("elderly", "child", "pregnant")
#: A variant for patients with an auto-tag (``tag:bp_uncontrolled``): the tag is given by the
#: tag rules when the patient is enrolled.
TAG_VARIANT = r"tag:[a-z0-9_]{1,64}"
_SLUG = r"^[a-z0-9][a-z0-9_-]*$"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(d|h|m|s)\s*$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
# Patient messages are plain text (SMS, WeChat, voice scripts), never HTML.
_JINJA = jinja2.Environment(autoescape=False, undefined=jinja2.StrictUndefined)  # noqa: S701


def parse_duration(value: Any) -> Any:
    """``"48h"``, ``"2d"``, ``"30m"`` → timedelta; anything else is left to pydantic (ISO 8601)."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            try:
                return dt.timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
            except OverflowError:
                raise ValueError(f"{value!r} is too long a duration") from None
    return value


def _time_of_day(value: Any) -> Any:
    if isinstance(value, int) and 0 <= value < 24 * 60:
        # YAML reads an unquoted 10:00 as the sexagesimal integer 600.
        return dt.time(value // 60, value % 60)
    return value


def _wall_clock(value: dt.time) -> dt.time:
    if value.tzinfo is not None:
        raise ValueError(
            f"give a wall-clock time like {value:%H:%M}, without an offset: "
            "each patient's own time zone applies"
        )
    return value


Duration = Annotated[dt.timedelta, BeforeValidator(parse_duration)]
TimeOfDay = Annotated[dt.time, BeforeValidator(_time_of_day), AfterValidator(_wall_clock)]
Slug = Annotated[str, Field(pattern=_SLUG, max_length=64)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class LocalizedText(_Strict):
    """The same text in every supported language; jinja2 syntax allowed."""

    zh_cn: str = Field(alias="zh-CN", min_length=1)
    en: str = Field(min_length=1)

    def get(self, locale: str) -> str:
        return self.en if locale == "en" else self.zh_cn

    @model_validator(mode="after")
    def _compiles(self) -> LocalizedText:
        for text in (self.zh_cn, self.en):
            problem = _template_syntax_error(text)
            if problem is not None:
                raise ValueError(f"template syntax error: {problem}")
        return self


@functools.lru_cache(maxsize=4096)
def _template_syntax_error(text: str) -> str | None:
    """jinja2's complaint about ``text``, or None. Cached: every workflow payload holding a
    plan or a message re-validates the same few texts (measured: 7% of a worker's CPU)."""
    try:
        _JINJA.parse(text)
    except jinja2.TemplateSyntaxError as exc:
        return exc.message or "invalid template"
    return None


class SendWindow(_Strict):
    """Quiet hours: messages go out only between ``start`` and ``end``, patient's local time."""

    start: TimeOfDay = dt.time(8, 0)
    end: TimeOfDay = dt.time(20, 0)

    @model_validator(mode="after")
    def _ordered(self) -> SendWindow:
        if self.start >= self.end:
            raise ValueError(f"start {self.start:%H:%M} must be before end {self.end:%H:%M}")
        return self

    def contains(self, local: dt.time) -> bool:
        return self.start <= local < self.end


class Option(_Strict):
    id: Slug
    label: LocalizedText
    score: float | None = None


class Question(_Strict):
    id: Slug
    type: Literal["yes_no", "choice", "scale", "number", "text"]
    text: LocalizedText
    options: list[Option] = Field(default_factory=list)
    min: float | None = None
    max: float | None = None
    unit: str | None = None
    indicator: str | None = Field(
        None, pattern=_SLUG, description="Record numeric answers as this observation indicator."
    )
    required: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> Question:
        if self.type == "choice" and len(self.options) < 2:
            raise ValueError("a choice question needs at least two options")
        if self.type != "choice" and self.options:
            raise ValueError(f"options are only for choice questions, not {self.type}")
        if self.type == "scale" and (self.min is None or self.max is None):
            raise ValueError("a scale question needs min and max")
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise ValueError("min must be below max")
        if self.indicator and self.type not in ("number", "scale"):
            raise ValueError("only number and scale answers can be recorded as an indicator")
        return self

    def points(self, value: Any) -> float | None:
        """What a parsed answer counts in a composite score: a choice's option ``score``, 1
        for yes and 0 for no, a number as itself; None when it counts nothing."""
        if self.type == "yes_no":
            return 1.0 if value == "yes" else 0.0 if value == "no" else None
        if self.type == "choice":
            option = next((o for o in self.options if o.id == value), None)
            return option.score if option is not None else None
        if self.type in ("scale", "number") and isinstance(value, int | float):
            return float(value)
        return None

    def point_range(self) -> tuple[float, float] | None:
        """The lowest and highest points an answer can count (None: it counts none)."""
        if self.type == "yes_no":
            return 0.0, 1.0
        if self.type == "choice":
            scores = [o.score for o in self.options]
            if any(score is None for score in scores):
                return None
            return min(scores), max(scores)  # type: ignore[type-var]
        if self.type in ("scale", "number") and self.min is not None and self.max is not None:
            return self.min, self.max
        return None

    def parse_answer(self, raw: Any) -> Any:
        """A patient's raw answer → the typed value rules compare; ValueError if it cannot be."""
        if self.type == "yes_no":
            return _parse_yes_no(raw)
        if self.type == "choice":
            text = str(raw).strip().lower()
            for index, option in enumerate(self.options, start=1):
                labels = {
                    option.id,
                    option.label.zh_cn.lower(),
                    option.label.en.lower(),
                    str(index),
                }
                if text in labels:
                    return option.id
            raise ValueError(f"not one of {[o.id for o in self.options]}")
        if self.type in ("scale", "number"):
            try:
                number = float(str(raw).strip())
            except ValueError:
                raise ValueError("not a number") from None
            if (self.min is not None and number < self.min) or (
                self.max is not None and number > self.max
            ):
                raise ValueError(f"outside {self.min}–{self.max}")
            return number
        return str(raw)


_YES = {"yes", "y", "true", "1", "是", "是的", "有", "对", "嗯"}
_NO = {"no", "n", "false", "0", "否", "不是", "没有", "无", "没"}


def _parse_yes_no(raw: Any) -> str:
    if isinstance(raw, bool):
        return "yes" if raw else "no"
    text = str(raw).strip().lower()
    if text in _YES:
        return "yes"
    if text in _NO:
        return "no"
    raise ValueError("not yes or no")


class Questionnaire(_Strict):
    title: LocalizedText
    questions: list[Question] = Field(min_length=1)

    @field_validator("questions")
    @classmethod
    def _unique(cls, questions: list[Question]) -> list[Question]:
        _no_duplicates(q.id for q in questions)
        return questions

    def question(self, question_id: str) -> Question | None:
        return next((q for q in self.questions if q.id == question_id), None)


Op = Literal["eq", "ne", "gt", "gte", "lt", "lte", "in"]


class AnswerCondition(_Strict):
    """True when the answer to ``question`` compares to ``value`` by ``op``."""

    question: Slug
    op: Op = "eq"
    value: Any

    @field_validator("value", mode="before")
    @classmethod
    def _yes_no(cls, value: Any) -> Any:
        # YAML reads an unquoted yes/no as a boolean; answers to yes/no questions are the
        # words, so `value: yes` would otherwise never match.
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, list):
            return ["yes" if v is True else "no" if v is False else v for v in value]
        return value


class IndicatorCondition(_Strict):
    """True when an observation of ``indicator`` (from an answer or a device) compares true."""

    indicator: Slug
    op: Op
    value: float


class CompositeScore(_Strict):
    """The sum of several answers' points (a questionnaire score such as EPDS); the items in
    ``reverse`` count the other way round (lowest + highest − points)."""

    sum: list[Slug] = Field(min_length=2)
    reverse: list[Slug] = Field(default_factory=list)

    @model_validator(mode="after")
    def _items(self) -> CompositeScore:
        _no_duplicates(self.sum)
        stray = [item for item in self.reverse if item not in self.sum]
        if stray:
            raise ValueError(f"reverse items {stray} are not in sum")
        return self


class ScoreCondition(_Strict):
    """True when a composite score of the answers compares to ``value`` by ``op``."""

    score: CompositeScore
    op: Literal["eq", "ne", "gt", "gte", "lt", "lte"]
    value: float


class AnyCondition(_Strict):
    any: list[Condition] = Field(min_length=1)


class AllCondition(_Strict):
    all: list[Condition] = Field(min_length=1)


def _condition_kind(value: Any) -> str | None:
    """Which kind of condition a mapping is, by its key: errors then speak of that kind only
    (not of all four, as a plain union's would)."""
    if isinstance(value, dict):
        key = next(
            (k for k in ("any", "all", "indicator", "score", "question") if k in value), None
        )
        return _CONDITION_BY_KEY.get(key) if key else None
    name = type(value).__name__
    return name if name in _CONDITION_BY_KEY.values() else None


Condition = Annotated[
    Annotated[AnswerCondition, Tag("AnswerCondition")]
    | Annotated[IndicatorCondition, Tag("IndicatorCondition")]
    | Annotated[ScoreCondition, Tag("ScoreCondition")]
    | Annotated[AnyCondition, Tag("AnyCondition")]
    | Annotated[AllCondition, Tag("AllCondition")],
    Discriminator(
        _condition_kind,
        custom_error_type="condition",
        custom_error_message=(
            "a condition needs one of `question:` (an answer), `indicator:` (a reading), "
            "`score:` (a sum of answers), `any:` or `all:`"
        ),
    ),
]
_CONDITION_BY_KEY: dict[str, str] = {
    "question": "AnswerCondition",
    "indicator": "IndicatorCondition",
    "score": "ScoreCondition",
    "any": "AnyCondition",
    "all": "AllCondition",
}


class AlertRule(_Strict):
    """An abnormal answer or observation, and the tier and priority of the ticket it raises."""

    id: Slug
    condition: Condition = Field(alias="if")
    tier: Tier
    priority: Priority = Priority.ROUTINE
    category: str = "clinical_symptom"
    department: str | None = Field(
        None,
        max_length=64,
        description="The department that owns this rule's tickets (default: the routing "
        "table by category). Rules of one answer that name different departments open one "
        "ticket each.",
    )
    summary: LocalizedText
    advice: LocalizedText | None = Field(
        None, description="Sent to the patient at once when the rule fires (e.g. call 120)."
    )
    touchpoints: list[Slug] | None = Field(None, description="Only for answers to these.")


class Recurrence(_Strict):
    """Every ``every_days`` days from ``start_day``; stops after ``count`` or ``until_day``."""

    every_days: int = Field(ge=1, le=366)
    start_day: int = Field(0, ge=0)
    count: int | None = Field(None, ge=1)
    until_day: int | None = Field(None, ge=0)

    @property
    def open_ended(self) -> bool:
        return self.count is None and self.until_day is None

    def day(self, occurrence: int) -> int | None:
        """The day offset of the ``occurrence``-th send (0-based), or None once it has stopped."""
        if self.count is not None and occurrence >= self.count:
            return None
        day = self.start_day + occurrence * self.every_days
        if self.until_day is not None and day > self.until_day:
            return None
        return day


class TouchpointSpec(_Strict):
    id: Slug
    day: int | None = Field(None, ge=0, le=3650, description="Days after discharge.")
    every: Recurrence | None = None
    kind: Literal["check_in", "questionnaire", "reminder", "education"] = "check_in"
    message: LocalizedText
    questionnaire: Slug | None = None
    channels: list[Slug] | None = None
    send_at: TimeOfDay | None = None
    answer_wait: Duration | None = None
    reminders: int | None = Field(None, ge=0, le=5)
    points: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _when(self) -> TouchpointSpec:
        if (self.day is None) == (self.every is None):
            raise ValueError("give exactly one of `day` (one send) or `every` (a recurrence)")
        return self

    @property
    def expects_answer(self) -> bool:
        return self.questionnaire is not None or self.kind in ("check_in", "questionnaire")


class Variant(_Strict):
    """Changes for a risk tier (``low``/``medium``/``high``) or special group (``elderly``…)."""

    add_touchpoints: list[TouchpointSpec] = Field(default_factory=list)
    remove_touchpoints: list[Slug] = Field(default_factory=list)
    alert_rules: list[AlertRule] = Field(default_factory=list)
    channels: list[Slug] | None = None
    send_window: SendWindow | None = None
    answer_wait: Duration | None = None
    reminders: int | None = Field(None, ge=0, le=5)
    lost_after_missed: int | None = Field(None, ge=1)


class MatchRule(_Strict):
    """Which discharges this pathway is for, when intake does not name one."""

    diagnosis_prefixes: list[str] = Field(default_factory=list)
    procedure_prefixes: list[str] = Field(default_factory=list)
    departments: list[str] = Field(default_factory=list)
    encounter_kinds: list[Literal["inpatient", "checkup", "outpatient", "day_surgery"]] = Field(
        default_factory=list
    )
    tags: list[Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,64}$")]] = Field(
        default_factory=list,
        description="Only patients who hold all these auto-tags when the discharge arrives: "
        "what their record so far gave them (a previous stay's readings, lab results, missed "
        "follow-ups: 高危, 血压控制不佳; templates/tags.yaml). A tag this discharge's own facts "
        "give (老年 for a new patient) is given at intake, after the pathway is chosen, and "
        "can choose a tag: variant.",
    )
    priority: int = Field(0, description="Higher wins when several pathways match.")


class PathwayTemplate(_Strict):
    id: Slug
    version: int = Field(ge=1)
    name: LocalizedText
    description: LocalizedText | None = None
    department: str | None = Field(None, description="The department that owns these journeys.")
    match: MatchRule = Field(default_factory=MatchRule)
    risk: RiskCriteria | None = Field(
        None, description="What makes a discharge high or medium risk (else the LACE index)."
    )
    channels: list[Slug] = Field(default_factory=lambda: ["wechat", "sms", "voice", "outbox"])
    send_window: SendWindow = Field(default_factory=SendWindow)
    send_at: TimeOfDay = dt.time(10, 0)
    answer_wait: Duration = dt.timedelta(hours=48)
    reminders: int = Field(1, ge=0, le=5)
    lost_after_missed: int = Field(2, ge=1, description="失访 after this many misses in a row.")
    points_per_answer: int = Field(10, ge=0)
    greetings: bool = True
    questionnaires: dict[Slug, Questionnaire] = Field(default_factory=dict)
    touchpoints: list[TouchpointSpec] = Field(min_length=1)
    alert_rules: list[AlertRule] = Field(default_factory=list)
    variants: dict[str, Variant] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _references(self) -> PathwayTemplate:
        """Cross-references between sections; each error points at the offending field."""
        for section, items in (
            ("touchpoints", self.touchpoints),
            ("alert_rules", self.alert_rules),
        ):
            _no_duplicates((item.id for item in items), section)
        for name in self.variants:
            if name not in {t.value for t in RiskTier} | set(SPECIAL_GROUPS) and not re.fullmatch(
                TAG_VARIANT, name
            ):
                raise LocatedError(
                    ("variants", name),
                    f"unknown variant {name!r}; use a risk tier "
                    f"({', '.join(t.value for t in RiskTier)}), "
                    f"a group ({', '.join(SPECIAL_GROUPS)}) or tag:<tag id> (templates/tags.yaml)",
                )
        if not self.send_window.contains(self.send_at):
            raise LocatedError(("send_at",), f"{self.send_at:%H:%M} is outside the send window")
        located_touchpoints: list[tuple[tuple[str | int, ...], TouchpointSpec]] = [
            (("touchpoints", i), t) for i, t in enumerate(self.touchpoints)
        ]
        located_rules: list[tuple[tuple[str | int, ...], AlertRule]] = [
            (("alert_rules", i), r) for i, r in enumerate(self.alert_rules)
        ]
        for name, variant in self.variants.items():
            known = {t.id for t in self.touchpoints}
            for index, removed in enumerate(variant.remove_touchpoints):
                if removed not in known:
                    raise LocatedError(
                        ("variants", name, "remove_touchpoints", index),
                        f"no touchpoint {removed!r}",
                    )
            located_touchpoints += [
                (("variants", name, "add_touchpoints", i), t)
                for i, t in enumerate(variant.add_touchpoints)
            ]
            located_rules += [
                (("variants", name, "alert_rules", i), r) for i, r in enumerate(variant.alert_rules)
            ]
        questions = {q.id for qn in self.questionnaires.values() for q in qn.questions}
        touchpoint_ids = {t.id for _, t in located_touchpoints}
        for loc, touchpoint in located_touchpoints:
            if touchpoint.questionnaire and touchpoint.questionnaire not in self.questionnaires:
                raise LocatedError(
                    (*loc, "questionnaire"), f"unknown questionnaire {touchpoint.questionnaire!r}"
                )
            if touchpoint.send_at and not self.send_window.contains(touchpoint.send_at):
                raise LocatedError((*loc, "send_at"), "outside the send window")
        for loc, rule in located_rules:
            for question in _condition_questions(rule.condition):
                if question not in questions:
                    raise LocatedError(
                        (*loc, "if"),
                        f"alert rule {rule.id!r}: no question {question!r} in any questionnaire",
                    )
            for touchpoint_id in rule.touchpoints or ():
                if touchpoint_id not in touchpoint_ids:
                    raise LocatedError(
                        (*loc, "touchpoints"),
                        f"alert rule {rule.id!r}: no touchpoint {touchpoint_id!r}",
                    )
        return self

    @property
    def open_ended(self) -> bool:
        return any(t.every is not None and t.every.open_ended for t in self.touchpoints)

    @property
    def key(self) -> tuple[str, int]:
        return (self.id, self.version)


def _no_duplicates(ids: Iterable[str], section: str | None = None) -> None:
    seen: set[str] = set()
    for index, item in enumerate(ids):
        if item in seen:
            if section is None:
                raise ValueError(f"duplicate id {item!r}")
            raise LocatedError((section, index, "id"), f"duplicate id {item!r}")
        seen.add(item)


class LocatedError(ValueError):
    """A validation error that knows which field of the template it is about."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


def _condition_questions(condition: Condition) -> Iterator[str]:
    if isinstance(condition, AnswerCondition):
        yield condition.question
    elif isinstance(condition, ScoreCondition):
        yield from condition.score.sum
    elif isinstance(condition, AnyCondition):
        for inner in condition.any:
            yield from _condition_questions(inner)
    elif isinstance(condition, AllCondition):
        for inner in condition.all:
            yield from _condition_questions(inner)


# --------------------------------------------------------------------------- resolved plan


class PlannedTouchpoint(_Strict):
    """One touchpoint as the journey runs it: every default filled in."""

    id: str
    day: int | None
    every: Recurrence | None
    kind: str
    message: LocalizedText
    questionnaire: Questionnaire | None
    channels: list[str]
    send_at: dt.time
    answer_wait: dt.timedelta
    reminders: int
    points: int
    expects_answer: bool


class JourneyPlan(_Strict):
    """A template resolved for one patient: what the journey workflow receives as data."""

    pathway_id: str
    pathway_version: int
    name: LocalizedText
    variants: list[str]
    department: str | None
    send_window: SendWindow
    lost_after_missed: int
    greetings: bool
    touchpoints: list[PlannedTouchpoint]
    alert_rules: list[AlertRule]

    @property
    def open_ended(self) -> bool:
        return any(t.every is not None and t.every.open_ended for t in self.touchpoints)

    def touchpoint(self, touchpoint_id: str) -> PlannedTouchpoint:
        for touchpoint in self.touchpoints:
            if touchpoint.id == touchpoint_id:
                return touchpoint
        raise KeyError(touchpoint_id)


def check_groups(groups: Iterable[str]) -> list[str]:
    """``groups`` if every one is a special group a variant can be for, else a clear error."""
    chosen = list(groups)
    unknown = [g for g in chosen if g not in SPECIAL_GROUPS]
    if unknown:
        raise ValidationFailed(
            f"unknown group {', '.join(repr(g) for g in unknown)}: groups are "
            f"{', '.join(SPECIAL_GROUPS)}"
        )
    return chosen


def applicable_variants(
    template: PathwayTemplate, risk_tier: RiskTier | str | None, groups: Iterable[str]
) -> list[str]:
    """The variants that apply, in a fixed order: the risk tier first, then special groups,
    then tags (``tag:<id>`` groups) in name order."""
    chosen = []
    given = set(groups)
    if risk_tier is not None and str(risk_tier) in template.variants:
        chosen.append(str(risk_tier))
    chosen += [g for g in SPECIAL_GROUPS if g in given and g in template.variants]
    chosen += sorted(g for g in given if re.fullmatch(TAG_VARIANT, g) and g in template.variants)
    return chosen


def resolve_plan(
    template: PathwayTemplate, risk_tier: RiskTier | str | None = None, groups: Iterable[str] = ()
) -> JourneyPlan:
    """Apply the matching variants to ``template`` and fill every default."""
    names = applicable_variants(template, risk_tier, groups)
    touchpoints = list(template.touchpoints)
    rules = list(template.alert_rules)
    channels, window = template.channels, template.send_window
    answer_wait, reminders, lost_after = (
        template.answer_wait,
        template.reminders,
        template.lost_after_missed,
    )
    for name in names:
        variant = template.variants[name]
        touchpoints = [t for t in touchpoints if t.id not in set(variant.remove_touchpoints)]
        replaced = {t.id for t in variant.add_touchpoints}
        touchpoints = [t for t in touchpoints if t.id not in replaced] + variant.add_touchpoints
        # A variant's rule with an existing id replaces it (e.g. other thresholds in pregnancy).
        overridden = {r.id for r in variant.alert_rules}
        rules = [r for r in rules if r.id not in overridden] + list(variant.alert_rules)
        channels = variant.channels or channels
        window = variant.send_window or window
        answer_wait = variant.answer_wait or answer_wait
        reminders = variant.reminders if variant.reminders is not None else reminders
        lost_after = variant.lost_after_missed or lost_after
    touchpoints.sort(key=lambda t: (t.day if t.day is not None else t.every.start_day, t.id))  # type: ignore[union-attr]
    send_at = template.send_at if window.contains(template.send_at) else window.start
    planned = [
        PlannedTouchpoint(
            id=t.id,
            day=t.day,
            every=t.every,
            kind=t.kind,
            message=t.message,
            questionnaire=template.questionnaires.get(t.questionnaire) if t.questionnaire else None,
            channels=list(t.channels or channels),
            send_at=t.send_at if t.send_at and window.contains(t.send_at) else send_at,
            answer_wait=t.answer_wait or answer_wait,
            reminders=t.reminders if t.reminders is not None else reminders,
            points=t.points if t.points is not None else template.points_per_answer,
            expects_answer=t.expects_answer,
        )
        for t in touchpoints
    ]
    return JourneyPlan(
        pathway_id=template.id,
        pathway_version=template.version,
        name=template.name,
        variants=names,
        department=template.department,
        send_window=window,
        lost_after_missed=lost_after,
        greetings=template.greetings,
        touchpoints=planned,
        alert_rules=rules,
    )


# --------------------------------------------------------------------------- loading


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line of the YAML node at pydantic location ``loc`` (deepest one found)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == part), None)
            if match is None:
                break
            key, node = match
            line = key.start_mark.line + 1  # a block value starts on the line after its key
            continue
        if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            continue  # pydantic adds union-member names to loc; they are not YAML keys
        line = node.start_mark.line + 1
    return line


def _loc_text(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in _UNION_MEMBERS or part.startswith(("function-", "[key]")):
            continue  # union-member and validator names are noise to a template author
        elif not re.fullmatch(r"[A-Za-z0-9_-]+", part):
            text += f"[{part!r}]"  # a key as odd as an empty one: quoted, so it shows
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


_UNION_MEMBERS = frozenset(
    member.__name__
    for member in (AnswerCondition, IndicatorCondition, ScoreCondition, AnyCondition, AllCondition)
) | {"AnyOf", "AllOf", "Fact"}  # the risk criteria's kinds


def load_template(path: Path) -> PathwayTemplate:
    """Read and validate one YAML file; errors say ``file:line: field: reason``."""
    return read_template(path)[0]


def read_template(path: Path) -> tuple[PathwayTemplate, yaml.Node]:
    """The validated template and its YAML node tree (to say on which line a field is)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationFailed(f"{path}: cannot read: {exc}") from None
    return parse_template(text, path)


def parse_template(text: str, path: Path | str) -> tuple[PathwayTemplate, yaml.Node]:
    """:func:`read_template` for YAML text already read (an upload); ``path`` names it in
    errors."""
    try:
        root, data = read_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ValidationFailed(f"{where}: not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ValidationFailed(f"{path}:1: a pathway template must be a mapping (id, version, …)")
    try:
        return PathwayTemplate.model_validate(data), root
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            cause = (error.get("ctx") or {}).get("error")
            if isinstance(cause, LocatedError):
                loc = loc + cause.loc
            message = error["msg"].removeprefix("Value error, ")
            problems.append(locate(path, root, loc, message))
        raise ValidationFailed("invalid pathway template\n  " + "\n  ".join(problems)) from None


def locate(path: Path | str, root: yaml.Node | None, loc: tuple[int | str, ...], text: str) -> str:
    """``file:line: field: text`` for the field of a template at ``loc``."""
    return f"{path}:{_line_of(root, loc)}: {_loc_text(loc)}: {text}"


class PathwayCatalog:
    """Every registered template, by id and version; the highest version is the current one."""

    def __init__(self) -> None:
        self._templates: dict[tuple[str, int], PathwayTemplate] = {}
        self._origins: dict[tuple[str, int], str] = {}
        self._retired: set[tuple[str, int]] = set()

    def add(self, template: PathwayTemplate, origin: str = "", *, retired: bool = False) -> None:
        """Register a version; a retired one stays readable by its version (running journeys
        name it) but is never chosen for a new enrollment."""
        if template.key in self._templates:
            raise ValidationFailed(
                f"{origin or template.id}: pathway {template.id!r} version {template.version} "
                f"is already registered (from {self._origins[template.key] or 'a plugin'})"
            )
        self._templates[template.key] = template
        self._origins[template.key] = origin
        if retired:
            self._retired.add(template.key)

    def keys(self) -> set[tuple[str, int]]:
        """Every (id, version) registered, retired ones included."""
        return set(self._templates)

    def is_retired(self, template: PathwayTemplate) -> bool:
        return template.key in self._retired

    def add_source(self, source: Path | PathwayTemplate) -> None:
        if isinstance(source, PathwayTemplate):
            self.add(source, "plugin")
            return
        path = Path(source)
        files = sorted(path.rglob("*.y*ml")) if path.is_dir() else [path]
        for file in files:
            self.add(load_template(file), str(file))

    def get(self, pathway_id: str, version: int | None = None) -> PathwayTemplate:
        if version is not None:
            template = self._templates.get((pathway_id, version))
            if template is None:
                raise NotFoundError(f"pathway {pathway_id!r} has no version {version}")
            return template
        versions = [
            v for (pid, v) in self._templates if pid == pathway_id and (pid, v) not in self._retired
        ]
        if not versions:
            known = ", ".join(self.ids()) or "none"
            if any(pid == pathway_id for pid, _ in self._templates):
                raise NotFoundError(f"pathway {pathway_id!r} has only retired versions")
            raise NotFoundError(f"no pathway {pathway_id!r} (known: {known})")
        return self._templates[(pathway_id, max(versions))]

    def ids(self) -> list[str]:
        """Pathways open for enrollment (at least one version not retired)."""
        return sorted(
            {pid for key in self._templates if key not in self._retired for pid in [key[0]]}
        )

    def current(self) -> list[PathwayTemplate]:
        return [self.get(pid) for pid in self.ids()]

    def versions(self, pathway_id: str) -> list[int]:
        return sorted(v for pid, v in self._templates if pid == pathway_id)

    def origin(self, template: PathwayTemplate) -> str:
        return self._origins.get(template.key, "")

    def match(
        self,
        *,
        diagnosis_codes: Iterable[str] = (),
        procedure_codes: Iterable[str] = (),
        department: str | None = None,
        encounter_kind: str | None = None,
        tags: Collection[str] = (),
    ) -> PathwayTemplate | None:
        """The best pathway for a discharge by its match rules (None if nothing matches);
        ``tags`` are the auto-tags the patient holds."""
        diagnoses = [c.upper() for c in diagnosis_codes]
        procedures = list(procedure_codes)
        best: tuple[int, int, str] | None = None
        for template in self.current():
            rule = template.match
            score = 0
            if rule.diagnosis_prefixes:
                if not any(
                    d.startswith(p.upper()) for d in diagnoses for p in rule.diagnosis_prefixes
                ):
                    continue
                score += 4
            if rule.procedure_prefixes:
                if not any(c.startswith(p) for c in procedures for p in rule.procedure_prefixes):
                    continue
                score += 4
            if rule.departments:
                if department not in rule.departments:
                    continue
                score += 2
            if rule.encounter_kinds:
                if encounter_kind not in rule.encounter_kinds:
                    continue
                score += 1
            if rule.tags:
                if not set(rule.tags) <= set(tags):
                    continue
                score += 3
            if score == 0:
                continue
            candidate = (rule.priority, score, template.id)
            if best is None or candidate[:2] > best[:2]:
                best = candidate
        return self.get(best[2]) if best else None


PathwaySource = Path | PathwayTemplate
PathwayRegistry = Callable[[PathwaySource], None]
