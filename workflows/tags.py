"""Auto-tags (自动设置标签): YAML rules over a patient's record, applied whenever it grows.

Rules live in ``templates/tags.yaml`` (and the hospital's own in ``SUIFANG_TAGS_FILE``, merged
over them). Each tag has a name in both languages and a ``when`` condition over the record:
the latest risk tier, age, missed touchpoints, uncontrolled indicators (the trend's own
judgement), the latest answer to a question, recent alerts, diagnosis codes — combined with
``all``, ``any`` and ``not``. :func:`apply_tags` is called at intake and after a journey
records answers, readings or alerts: it adds and removes tags so the patient's tags are what
the rules say of the record now, keeping every change as history. Tags then choose pathway
variants (a variant named ``tag:<id>``), show in the record, and filter.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import bindparam
from sqlmodel import Session, col, func, select

from suifang.core.db import utcnow
from suifang.core.enums import RiskTier
from suifang.core.errors import ValidationFailed
from suifang.core.models import (
    Alert,
    Answer,
    Encounter,
    Enrollment,
    Observation,
    Patient,
    PatientTag,
    PatientTagChange,
    TouchpointRecord,
)
from suifang.core.pathway_checks import Indicator, load_indicators
from suifang.core.pathways import LocalizedText
from suifang.core.yaml_input import line_of, read_yaml
from suifang.workflows.health_record import age_on
from suifang.workflows.trends import indicator_trend

__all__ = [
    "TAG_VARIANT_PREFIX",
    "TagRule",
    "apply_tags",
    "load_tag_rules",
    "tag_groups",
    "tag_rules",
]

_TAGS_FILE = Path(__file__).resolve().parent.parent / "templates" / "tags.yaml"
TAG_VARIANT_PREFIX = "tag:"
#: Readings looked at to judge control, and how many are needed to judge at all.
CONTROL_WINDOW = dt.timedelta(days=180)
MIN_READINGS_FOR_CONTROL = 3
RECENT_ALERTS = dt.timedelta(days=90)


class AnswerIs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1)
    equals: Any = Field(None, alias="in")
    """One value or a list: the latest answer to ``question`` is one of them."""


class TagCondition(BaseModel):
    """Exactly one of these."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    all_of: list[TagCondition] | None = Field(None, alias="all", min_length=1)
    any_of: list[TagCondition] | None = Field(None, alias="any", min_length=1)
    none_of: TagCondition | None = Field(None, alias="not")
    risk_tier: RiskTier | None = None
    age_at_least: int | None = Field(None, ge=0, le=130)
    missed_touchpoints_at_least: int | None = Field(None, ge=1)
    uncontrolled: str | None = Field(None, description="An indicator id that has a target.")
    answer: AnswerIs | None = None
    alerts_at_least: int | None = Field(None, ge=1, description="In the last 90 days.")
    diagnosis_prefix: list[str] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> TagCondition:
        given = [name for name in type(self).model_fields if getattr(self, name) is not None]
        if len(given) != 1:
            keys = ", ".join(f.alias or n for n, f in type(self).model_fields.items())
            raise ValueError(f"a condition is exactly one of: {keys} (got {len(given)})")
        return self


class TagRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: LocalizedText
    when: TagCondition


class _TagFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1]
    tags: dict[str, TagRule] = Field(default_factory=dict)


def load_tag_rules(
    extra: Path | None = None, indicators: dict[str, Indicator] | None = None
) -> dict[str, TagRule]:
    """The shipped rules with ``extra``'s merged over them (an entry there replaces one here)."""
    rules = _read(_TAGS_FILE)
    if extra is not None:
        rules.update(_read(extra))
    registry = indicators if indicators is not None else load_indicators()
    for tag, rule in rules.items():
        for indicator in _uncontrolled_of(rule.when):
            if indicator not in registry or registry[indicator].target is None:
                raise ValidationFailed(
                    f"tags.{tag}: uncontrolled: {indicator!r} is not an indicator with a target"
                )
    return rules


@functools.lru_cache(maxsize=8)
def tag_rules(tags_file: Path | None, indicators_file: Path | None) -> dict[str, TagRule]:
    """The rules a deployment runs with (its settings' files), read once per process."""
    return load_tag_rules(tags_file, _cached_indicators(indicators_file))


@functools.lru_cache(maxsize=8)
def _cached_indicators(extra: Path | None) -> dict[str, Indicator]:
    # Read once per process: the files change with a deployment, not while it runs.
    return load_indicators(extra)


def _read(path: Path) -> dict[str, TagRule]:
    try:
        node, data = read_yaml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationFailed(f"{path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ValidationFailed(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    try:
        parsed = _TagFile.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            line = line_of(node, loc)
            where = f"{path}:{line}" if line else str(path)
            problems.append(f"{where}: {'.'.join(str(p) for p in loc)}: {error['msg']}")
        raise ValidationFailed("invalid tag rules\n  " + "\n  ".join(problems)) from None
    for tag in parsed.tags:
        if not tag.replace("_", "").isalnum() or not tag.islower():
            raise ValidationFailed(f"{path}: tags.{tag}: a tag id is lower case, digits and _")
    return dict(parsed.tags)


def _uncontrolled_of(condition: TagCondition) -> Iterable[str]:
    if condition.uncontrolled is not None:
        yield condition.uncontrolled
    for child in (condition.all_of or []) + (condition.any_of or []):
        yield from _uncontrolled_of(child)
    if condition.none_of is not None:
        yield from _uncontrolled_of(condition.none_of)


def _rows(model: Any, *where: Any) -> Any:
    return select(func.count()).select_from(model).where(*where).scalar_subquery()


# Built once: intake runs it for every discharge.
_RECORD_SIZE = select(
    _rows(
        Observation,
        Observation.patient_id == bindparam("patient"),
        col(Observation.observed_at) >= bindparam("readings_since"),
    ),
    _rows(Enrollment, Enrollment.patient_id == bindparam("patient")),
    _rows(
        Alert,
        Alert.patient_id == bindparam("patient"),
        col(Alert.created_at) >= bindparam("alerts_since"),
    ),
    _rows(Answer, Answer.patient_id == bindparam("patient")),
    _rows(PatientTag, PatientTag.patient_id == bindparam("patient")),
)


@dataclass(frozen=True, slots=True)
class _RecordSize:
    readings: int
    """In the control window, of any indicator."""
    enrollments: int
    alerts: int
    """In the last RECENT_ALERTS."""
    answers: int
    tags: int
    """Held now."""


class _Facts:
    """What the rules ask of one patient's record, each looked up once, when first asked."""

    def __init__(
        self,
        session: Session,
        patient_id: int,
        birth_date: dt.date | None,
        indicators: dict[str, Indicator],
        now: dt.datetime,
    ) -> None:
        self.session, self.patient_id, self.birth_date = session, patient_id, birth_date
        self.indicators, self.now = indicators, now
        self._cache: dict[Any, Any] = {}

    def _once(self, key: Any, compute: Any) -> Any:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def record_size(self) -> _RecordSize:
        """How much record the patient has, in one statement: most patients arrive at intake
        with none, and then no rule needs a query of its own (intake is on every discharge's
        path)."""

        def count() -> _RecordSize:
            row = self.session.exec(
                _RECORD_SIZE,
                params={
                    "patient": self.patient_id,
                    "readings_since": self.now - CONTROL_WINDOW,
                    "alerts_since": self.now - RECENT_ALERTS,
                },
            ).one()
            return _RecordSize(*row)

        return self._once("record", count)  # type: ignore[no-any-return]

    def risk_tier(self) -> str | None:
        if not self.record_size().enrollments:
            return None

        def latest() -> str | None:
            query = (
                select(Enrollment.risk_tier)
                .where(Enrollment.patient_id == self.patient_id)
                .order_by(col(Enrollment.enrolled_at).desc(), col(Enrollment.id).desc())
            )
            return self.session.exec(query).first()

        return self._once("risk", latest)

    def missed(self) -> int:
        if not self.record_size().enrollments:
            return 0

        def count() -> int:
            query = (
                select(func.count())
                .select_from(TouchpointRecord)
                .join(Enrollment, col(Enrollment.id) == col(TouchpointRecord.enrollment_id))
                .where(
                    Enrollment.patient_id == self.patient_id, TouchpointRecord.status == "missed"
                )
            )
            return int(self.session.exec(query).one())

        return self._once("missed", count)

    def uncontrolled(self, indicator: str) -> bool:
        if self.record_size().readings < MIN_READINGS_FOR_CONTROL:
            return False

        def judge() -> bool:
            trend = indicator_trend(
                self.session,
                self.patient_id,
                indicator,
                self.indicators,
                since=self.now - CONTROL_WINDOW,
            )
            enough = trend.count >= MIN_READINGS_FOR_CONTROL
            return enough and trend.control is not None and not trend.control.controlled

        return self._once(("uncontrolled", indicator), judge)

    def answer(self, question: str) -> Any:
        if not self.record_size().answers:
            return None

        def latest() -> Any:
            query = (
                select(Answer)
                .where(Answer.patient_id == self.patient_id, Answer.question_id == question)
                .order_by(col(Answer.received_at).desc(), col(Answer.id).desc())
            )
            row = self.session.exec(query).first()
            return row.value if row is not None else None

        return self._once(("answer", question), latest)

    def recent_alerts(self) -> int:
        return self.record_size().alerts

    def diagnoses(self) -> list[str]:
        def codes() -> list[str]:
            query = select(Encounter).where(Encounter.patient_id == self.patient_id)
            return [c for e in self.session.exec(query) for c in (e.diagnosis_codes or [])]

        return self._once("diagnoses", codes)


def _holds(condition: TagCondition, facts: _Facts) -> bool:
    if condition.all_of is not None:
        return all(_holds(c, facts) for c in condition.all_of)
    if condition.any_of is not None:
        return any(_holds(c, facts) for c in condition.any_of)
    if condition.none_of is not None:
        return not _holds(condition.none_of, facts)
    if condition.risk_tier is not None:
        return facts.risk_tier() == condition.risk_tier.value
    if condition.age_at_least is not None:
        age = age_on(facts.birth_date, facts.now.date())
        return age is not None and age >= condition.age_at_least
    if condition.missed_touchpoints_at_least is not None:
        return facts.missed() >= condition.missed_touchpoints_at_least
    if condition.uncontrolled is not None:
        return facts.uncontrolled(condition.uncontrolled)
    if condition.answer is not None:
        wanted = condition.answer.equals
        options = wanted if isinstance(wanted, list) else [wanted]
        return facts.answer(condition.answer.question) in options
    if condition.alerts_at_least is not None:
        return facts.recent_alerts() >= condition.alerts_at_least
    prefixes = tuple(p.upper() for p in condition.diagnosis_prefix or [])
    return any(code.upper().startswith(prefixes) for code in facts.diagnoses())


def apply_tags(
    session: Session,
    patient_id: int,
    *,
    reason: str,
    rules: dict[str, TagRule] | None = None,
    indicators_file: Path | None = None,
    tags_file: Path | None = None,
    now: dt.datetime | None = None,
) -> list[str]:
    """Make the patient's tags what the rules say of the record now; the tags, sorted.

    Idempotent: a second call with nothing new changes nothing and records nothing. The
    caller commits."""
    # The rules read the birth date; loading the patient would decrypt every identifier (a
    # trend still loads it, but only for a patient with readings enough to judge).
    patient = session.exec(
        select(Patient.id, Patient.birth_date).where(Patient.id == patient_id)
    ).first()
    if patient is None:
        return []
    rules = rules if rules is not None else tag_rules(tags_file, indicators_file)
    indicators = _cached_indicators(indicators_file)
    facts = _Facts(session, patient_id, patient.birth_date, indicators, now or utcnow())
    wanted = {tag for tag, rule in rules.items() if _holds(rule.when, facts)}
    held = (
        {
            row.tag: row
            for row in session.exec(select(PatientTag).where(PatientTag.patient_id == patient_id))
        }
        if facts.record_size().tags
        else {}
    )
    at = facts.now
    # A tag whose rule was removed from the file stays until someone takes it away.
    removed = {tag for tag in held.keys() - wanted if tag in rules}
    for tag in sorted(wanted - held.keys()):
        session.add(PatientTag(patient_id=patient_id, tag=tag, since=at))
        session.add(
            PatientTagChange(patient_id=patient_id, tag=tag, change="added", reason=reason, at=at)
        )
    for tag in sorted(removed):
        session.delete(held[tag])
        session.add(
            PatientTagChange(patient_id=patient_id, tag=tag, change="removed", reason=reason, at=at)
        )
    return sorted((held.keys() - removed) | wanted)


def tag_groups(tags: Iterable[str]) -> list[str]:
    """The journey groups tags stand for: a variant named ``tag:<id>`` applies to a patient
    with the tag."""
    return [f"{TAG_VARIANT_PREFIX}{tag}" for tag in sorted(tags)]
