"""The built-in readmission-risk plugin: the LACE index, with Charlson from ICD-10 codes.

LACE (van Walraven C, Dhalla IA, Bell C, et al. Derivation and validation of an index to
predict early death or unplanned readmission after discharge from hospital to the community.
CMAJ 2010;182(6):551-557) adds four parts, 0–19 in all:

- **L**ength of stay: <1 day 0, 1 day 1, 2 days 2, 3 days 3, 4–6 days 4, 7–13 days 5,
  ≥14 days 7.
- **A**cuity: 3 if the patient was admitted through the emergency department.
- **C**omorbidity: the Charlson index scored 0→0, 1→1, 2→2, 3→3, ≥4→5.
- **E**D visits in the previous six months, one point each, at most 4.

Tiers follow the cut-offs most follow-up programmes use (e.g. Robinson R, Hudali T. The
HOSPITAL score and LACE index as predictors of 30 day readmission. PeerJ 2017;5:e3137):
LACE ≥ 10 is high risk, 5–9 medium, 0–4 low.

The Charlson index is taken from the HIS when it sends one; otherwise it is computed from
the encounter's ICD-10 codes with the coding algorithm of Quan H, Sundararajan V, Halfon P,
et al. (Med Care 2005;43(11):1130-1139) and Charlson's original weights (J Chronic Dis
1987;40(5):373-383). Within each pair of graded conditions only the graver one counts.

Built-in plugins are asked last (``trylast``), so a hospital's own model wins whenever it
answers.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass

from suifang.core.enums import RiskTier
from suifang.core.errors import ValidationFailed
from suifang.core.hooks import hookimpl
from suifang.core.risk import RiskAssessment, RiskInput, SpecialGroup

__all__ = [
    "CHARLSON_CONDITIONS",
    "LACE_HIGH",
    "LACE_MEDIUM",
    "CharlsonCondition",
    "charlson_index",
    "lace",
    "suifang_assess_risk",
]

LACE_HIGH = 10
"""LACE at or above this is high risk."""
LACE_MEDIUM = 5
"""LACE at or above this (and below :data:`LACE_HIGH`) is medium risk."""

ELDERLY_FROM_AGE = 65
CHILD_BELOW_AGE = 14
ED_VISITS_CAP = 4
EMERGENCY_ADMISSION_POINTS = 3


@dataclass(frozen=True, slots=True)
class CharlsonCondition:
    """One Charlson condition: its weight and the ICD-10 codes that define it (Quan 2005).

    ``codes`` is space-separated; a code stands for itself and every code below it (``I50``
    covers ``I50.0``–``I50.9``), and ``A-B`` is an inclusive range at the same depth.
    """

    key: str
    name: str
    weight: int
    codes: str


# Quan et al. 2005, "Enhanced ICD-10" column of table 1, with Charlson's 1987 weights.
CHARLSON_CONDITIONS: tuple[CharlsonCondition, ...] = (
    CharlsonCondition("mi", "myocardial infarction", 1, "I21 I22 I25.2"),
    CharlsonCondition(
        "chf",
        "congestive heart failure",
        1,
        "I09.9 I11.0 I13.0 I13.2 I25.5 I42.0 I42.5-I42.9 I43 I50 P29.0",
    ),
    CharlsonCondition(
        "pvd",
        "peripheral vascular disease",
        1,
        "I70 I71 I73.1 I73.8 I73.9 I77.1 I79.0 I79.2 K55.1 K55.8 K55.9 Z95.8 Z95.9",
    ),
    CharlsonCondition("cvd", "cerebrovascular disease", 1, "G45 G46 H34.0 I60-I69"),
    CharlsonCondition("dementia", "dementia", 1, "F00-F03 F05.1 G30 G31.1"),
    CharlsonCondition(
        "cpd",
        "chronic pulmonary disease",
        1,
        "I27.8 I27.9 J40-J47 J60-J67 J68.4 J70.1 J70.3",
    ),
    CharlsonCondition(
        "rheumatic", "rheumatic disease", 1, "M05 M06 M31.5 M32-M34 M35.1 M35.3 M36.0"
    ),
    CharlsonCondition("pud", "peptic ulcer disease", 1, "K25-K28"),
    CharlsonCondition(
        "mild_liver",
        "mild liver disease",
        1,
        "B18 K70.0-K70.3 K70.9 K71.3-K71.5 K71.7 K73 K74 K76.0 K76.2-K76.4 K76.8 K76.9 Z94.4",
    ),
    CharlsonCondition(
        "diabetes",
        "diabetes without complications",
        1,
        "E10.0 E10.1 E10.6 E10.8 E10.9 E11.0 E11.1 E11.6 E11.8 E11.9 "
        "E12.0 E12.1 E12.6 E12.8 E12.9 E13.0 E13.1 E13.6 E13.8 E13.9 "
        "E14.0 E14.1 E14.6 E14.8 E14.9",
    ),
    CharlsonCondition(
        "diabetes_complicated",
        "diabetes with complications",
        2,
        "E10.2-E10.5 E10.7 E11.2-E11.5 E11.7 E12.2-E12.5 E12.7 E13.2-E13.5 E13.7 E14.2-E14.5 E14.7",
    ),
    CharlsonCondition(
        "hemiplegia",
        "hemiplegia or paraplegia",
        2,
        "G04.1 G11.4 G80.1 G80.2 G81 G82 G83.0-G83.4 G83.9",
    ),
    CharlsonCondition(
        "renal",
        "renal disease",
        2,
        "I12.0 I13.1 N03.2-N03.7 N05.2-N05.7 N18 N19 N25.0 Z49.0-Z49.2 Z94.0 Z99.2",
    ),
    CharlsonCondition(
        "cancer",
        "cancer",
        2,
        "C00-C26 C30-C34 C37-C41 C43 C45-C58 C60-C76 C81-C85 C88 C90-C97",
    ),
    CharlsonCondition(
        "severe_liver",
        "moderate or severe liver disease",
        3,
        "I85.0 I85.9 I86.4 I98.2 K70.4 K71.1 K72.1 K72.9 K76.5 K76.6 K76.7",
    ),
    CharlsonCondition("metastatic", "metastatic solid tumour", 6, "C77-C80"),
    CharlsonCondition("aids", "AIDS/HIV", 6, "B20-B22 B24"),
)

# (milder, graver): when both are coded only the graver one counts.
_HIERARCHY: tuple[tuple[str, str], ...] = (
    ("mild_liver", "severe_liver"),
    ("diabetes", "diabetes_complicated"),
    ("cancer", "metastatic"),
)

# Letter, two digits, then the subdivision: WHO's ".9", or the Chinese national clinical
# edition's longer extensions such as "I50.900x001". Dagger/asterisk marks are dropped.
_ICD10 = re.compile(r"[A-Z][0-9]{2}(?:\.?[0-9A-Z]{1,10})?")
# ICD-O morphology codes (M8140/3) ride along in Chinese diagnosis lists; they carry no
# Charlson condition, so they are accepted and ignored rather than refused.
_MORPHOLOGY = re.compile(r"M[0-9]{4}/[0-9]")
_MARKS = str.maketrans("", "", " †*+")


def _expand(spec: str) -> list[str]:
    """``"I42.5-I42.9"`` → ``["I425", …, "I429"]``; ``"I50"`` → ``["I50"]`` (dots dropped)."""
    first, _, last = spec.replace(".", "").partition("-")
    if not last:
        return [first]
    if first[0] != last[0] or len(first) != len(last):
        raise ValueError(f"Charlson table: range {spec} must stay within one letter and depth")
    width = len(first) - 1
    return [f"{first[0]}{n:0{width}d}" for n in range(int(first[1:]), int(last[1:]) + 1)]


def _build_lookup() -> dict[str, CharlsonCondition]:
    lookup: dict[str, CharlsonCondition] = {}
    for condition in CHARLSON_CONDITIONS:
        for spec in condition.codes.split():
            for prefix in _expand(spec):
                if prefix in lookup:
                    raise ValueError(f"Charlson table: {prefix} is listed twice")
                lookup[prefix] = condition
    # A code must name one condition: a category and one of its subdivisions never both.
    overlapping = sorted(p for p in lookup if len(p) > 3 and p[:3] in lookup)
    if overlapping:
        raise ValueError(f"Charlson table: {overlapping} are inside a listed category")
    return lookup


_BY_PREFIX = _build_lookup()


def _normalized(code: object, where: str) -> str | None:
    """The code without dots and marks, or None for an ICD-O morphology code."""
    if not isinstance(code, str):
        raise ValidationFailed(f"{where}: an ICD-10 code must be text")
    text = code.strip().upper().translate(_MARKS)
    if _MORPHOLOGY.fullmatch(text):
        return None
    if not _ICD10.fullmatch(text):
        # The value itself stays out of the message: diagnoses are patient data.
        raise ValidationFailed(
            f"{where} is not an ICD-10 code (expected a letter, two digits and an optional "
            "subdivision, e.g. I50.9)"
        )
    return text.replace(".", "")


def _conditions(coded: Iterable[tuple[str, object]]) -> list[CharlsonCondition]:
    found: set[str] = set()
    for where, code in coded:
        normalized = _normalized(code, where)
        if normalized is None:
            continue
        condition = _BY_PREFIX.get(normalized[:4]) or _BY_PREFIX.get(normalized[:3])
        if condition is not None:
            found.add(condition.key)
    for milder, graver in _HIERARCHY:
        if graver in found:
            found.discard(milder)
    return [condition for condition in CHARLSON_CONDITIONS if condition.key in found]


def charlson_index(codes: Iterable[str]) -> tuple[int, list[str]]:
    """The Charlson comorbidity index of a set of ICD-10 codes and the conditions it counted.

    Each condition counts once however many of its codes appear; of mild and severe liver
    disease, diabetes without and with complications, and cancer and metastatic tumour only
    the graver is counted. Codes outside the table add nothing. A value that is not an ICD-10
    code is refused with its position (never its value).
    """
    conditions = _conditions((f"codes[{index}]", code) for index, code in enumerate(codes))
    return sum(c.weight for c in conditions), [c.name for c in conditions]


def _length_of_stay(subject: RiskInput) -> float | None:
    if subject.length_of_stay_days is not None:
        if subject.length_of_stay_days < 0:
            raise ValidationFailed("length_of_stay_days must not be negative")
        return subject.length_of_stay_days
    if subject.admitted_at is None:
        return None
    admitted, discharged = subject.admitted_at, subject.discharged_at
    if (admitted.tzinfo is None) != (discharged.tzinfo is None):
        raise ValidationFailed(
            "admitted_at and discharged_at must both carry a timezone, or neither"
        )
    if admitted > discharged:
        raise ValidationFailed("admitted_at is after discharged_at")
    if discharged.tzinfo is not None:
        admitted = admitted.astimezone(discharged.tzinfo)
    # Days are counted in midnights, as hospitals count 住院天数 and as LACE was derived
    # (discharge date minus admission date); a same-day stay is 0.
    return float((discharged.date() - admitted.date()).days)


def _length_points(days: float) -> int:
    for below, points in ((1, 0), (2, 1), (3, 2), (4, 3), (7, 4), (14, 5)):
        if days < below:
            return points
    return 7


def _charlson_points(index: int) -> int:
    return 5 if index >= 4 else index


def _tier(score: int) -> RiskTier:
    if score >= LACE_HIGH:
        return RiskTier.HIGH
    if score >= LACE_MEDIUM:
        return RiskTier.MEDIUM
    return RiskTier.LOW


def _age_on(birth_date: dt.date, day: dt.date) -> int:
    return day.year - birth_date.year - ((day.month, day.day) < (birth_date.month, birth_date.day))


def _groups(subject: RiskInput) -> list[SpecialGroup]:
    groups: list[SpecialGroup] = []
    if subject.birth_date is not None:
        discharge_day = subject.discharged_at.date()
        if subject.birth_date > discharge_day:
            raise ValidationFailed("birth_date is after discharged_at")
        age = _age_on(subject.birth_date, discharge_day)
        if age >= ELDERLY_FROM_AGE:
            groups.append("elderly")
        elif age < CHILD_BELOW_AGE:
            groups.append("child")
    if subject.pregnant:
        groups.append("pregnant")
    return groups


def _format_days(days: float) -> str:
    count = f"{days:g}"
    return f"{count} day" if days == 1 else f"{count} days"


def lace(subject: RiskInput) -> RiskAssessment:
    """The LACE assessment of one discharge: tier, score, one reason line per part, groups.

    A missing length of stay (no ``length_of_stay_days`` and no ``admitted_at``) scores
    L=0 and says so in the reasons.
    """
    reasons: list[str] = []

    days = _length_of_stay(subject)
    if days is None:
        length = 0
        reasons.append("length of stay unknown: L=0")
    else:
        length = _length_points(days)
        reasons.append(f"length of stay {_format_days(days)}: L={length}")

    acuity = EMERGENCY_ADMISSION_POINTS if subject.emergency_admission else 0
    admission = "emergency admission" if acuity else "not an emergency admission"
    reasons.append(f"{admission}: A={acuity}")

    if subject.charlson_index is not None:
        if subject.charlson_index < 0:
            raise ValidationFailed("charlson_index must not be negative")
        index = subject.charlson_index
        comorbidity = _charlson_points(index)
        reasons.append(f"Charlson index {index} (given by the HIS): C={comorbidity}")
    else:
        conditions = _conditions(
            [(f"diagnosis_codes[{i}]", code) for i, code in enumerate(subject.diagnosis_codes)]
            + [
                (f"comorbidity_codes[{i}]", code)
                for i, code in enumerate(subject.comorbidity_codes)
            ]
        )
        index = sum(c.weight for c in conditions)
        comorbidity = _charlson_points(index)
        named = f" ({', '.join(c.name for c in conditions)})" if conditions else ""
        reasons.append(f"Charlson index {index}{named}: C={comorbidity}")

    if subject.ed_visits_6_months < 0:
        raise ValidationFailed("ed_visits_6_months must not be negative")
    ed_visits = min(subject.ed_visits_6_months, ED_VISITS_CAP)
    visits = (
        "1 ED visit"
        if subject.ed_visits_6_months == 1
        else (f"{subject.ed_visits_6_months} ED visits")
    )
    reasons.append(f"{visits} in the previous 6 months: E={ed_visits}")

    score = length + acuity + comorbidity + ed_visits
    return RiskAssessment(
        tier=_tier(score),
        score=score,
        method="LACE",
        reasons=reasons,
        groups=_groups(subject),
    )


@hookimpl(trylast=True)
def suifang_assess_risk(subject: RiskInput) -> RiskAssessment:
    """Built-in answer to :func:`suifang.core.hooks.suifang_assess_risk`: the LACE index."""
    return lace(subject)
