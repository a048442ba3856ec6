"""Risk criteria a pathway writes in YAML: which discharges are high or medium risk.

``risk: {high: {any: [{procedure_prefix: "74."}, {age_gte: 35}]}}`` in a template says a
caesarean or a mother of 35 or more is high risk. At enrollment the criteria are read over
the intake record (:class:`RiskFacts`): the first tier whose criterion holds (high, then
medium) is the patient's, else low — and the criterion that chose it is the reason shown in
``journeys show``. A ``suifang_assess_risk`` plugin still wins, and intake may override.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from suifang.core.enums import RiskTier

__all__ = ["Criterion", "RiskCriteria", "RiskFacts"]


class RiskFacts(BaseModel):
    """What intake knows about a discharge, as the criteria read it."""

    age: int | None = None
    sex: str | None = None
    pregnant: bool = False
    diagnosis_codes: list[str] = Field(default_factory=list)
    procedure_codes: list[str] = Field(default_factory=list)
    length_of_stay_days: float | None = None
    department: str | None = None
    lace: float | None = None
    ed_visits_6_months: int = 0
    emergency_admission: bool = False

    @staticmethod
    def age_at(birth_date: dt.date | None, day: dt.date) -> int | None:
        if birth_date is None:
            return None
        return (
            day.year - birth_date.year - ((day.month, day.day) < (birth_date.month, birth_date.day))
        )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Fact(_Strict):
    """One fact about the discharge; exactly one field is given."""

    age_gte: int | None = Field(None, ge=0, le=130)
    age_lt: int | None = Field(None, ge=0, le=130)
    sex: Literal["female", "male"] | None = None
    pregnant: bool | None = None
    diagnosis_prefix: str | None = Field(None, min_length=1, max_length=16)
    procedure_prefix: str | None = Field(None, min_length=1, max_length=16)
    length_of_stay_gte: float | None = Field(None, ge=0)
    department: str | None = Field(None, min_length=1, max_length=64)
    lace_gte: float | None = Field(None, ge=0, le=19)
    ed_visits_gte: int | None = Field(None, ge=0)
    emergency_admission: bool | None = None

    def model_post_init(self, __context: Any) -> None:
        given = [name for name in type(self).model_fields if getattr(self, name) is not None]
        if len(given) != 1:
            names = ", ".join(type(self).model_fields)
            raise ValueError(f"a fact names exactly one of {names}; got {given or 'none'}")

    def holds(self, facts: RiskFacts) -> str | None:
        """Why it holds (for the record), or None."""
        name = next(n for n in type(self).model_fields if getattr(self, n) is not None)
        return _CHECKS[name](facts, getattr(self, name))


def _at_least(value: float | None, limit: float, text: str) -> str | None:
    return text if value is not None and value >= limit else None


def _age_under(facts: RiskFacts, limit: int) -> str | None:
    return f"age {facts.age} < {limit}" if facts.age is not None and facts.age < limit else None


def _coded(kind: str, codes: list[str], prefix: str) -> str | None:
    code = _first(codes, prefix)
    return f"{kind} {code}" if code else None


_CHECKS: dict[str, Any] = {
    "age_gte": lambda f, n: _at_least(f.age, n, f"age {f.age} ≥ {n}"),
    "age_lt": _age_under,
    "sex": lambda f, sex: f"sex {sex}" if (f.sex or "").lower() == sex else None,
    "pregnant": lambda f, yes: (
        ("pregnant" if yes else "not pregnant") if f.pregnant == yes else None
    ),
    "diagnosis_prefix": lambda f, prefix: _coded("diagnosis", f.diagnosis_codes, prefix),
    "procedure_prefix": lambda f, prefix: _coded("procedure", f.procedure_codes, prefix),
    "length_of_stay_gte": lambda f, n: _at_least(
        f.length_of_stay_days, n, f"stay {f.length_of_stay_days} days ≥ {n:g}"
    ),
    "department": lambda f, code: f"department {code}" if f.department == code else None,
    "lace_gte": lambda f, n: _at_least(f.lace, n, f"LACE {f.lace} ≥ {n:g}"),
    "ed_visits_gte": lambda f, n: _at_least(
        f.ed_visits_6_months, n, f"{f.ed_visits_6_months} ED visits in 6 months"
    ),
    "emergency_admission": lambda f, yes: (
        ("admitted as an emergency" if yes else "not an emergency admission")
        if f.emergency_admission == yes
        else None
    ),
}


def _first(codes: list[str], prefix: str) -> str | None:
    wanted = prefix.upper()
    return next((c for c in codes if c.upper().startswith(wanted)), None)


class AnyOf(_Strict):
    any: list[Criterion] = Field(min_length=1)

    def holds(self, facts: RiskFacts) -> str | None:
        return next((why for c in self.any if (why := c.holds(facts))), None)


class AllOf(_Strict):
    all: list[Criterion] = Field(min_length=1)

    def holds(self, facts: RiskFacts) -> str | None:
        reasons = [c.holds(facts) for c in self.all]
        return " and ".join(reasons) if all(reasons) else None  # type: ignore[arg-type]


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "AnyOf" if "any" in value else "AllOf" if "all" in value else "Fact"
    return type(value).__name__


Criterion = Annotated[
    Annotated[AnyOf, Tag("AnyOf")] | Annotated[AllOf, Tag("AllOf")] | Annotated[Fact, Tag("Fact")],
    Discriminator(_kind),
]


class RiskCriteria(_Strict):
    """Per tier, what makes a discharge that tier; the first that holds wins."""

    high: Criterion | None = None
    medium: Criterion | None = None

    def tier_for(self, facts: RiskFacts) -> tuple[RiskTier, str]:
        """The tier and the criterion that chose it (``low`` when none holds)."""
        for tier, criterion in ((RiskTier.HIGH, self.high), (RiskTier.MEDIUM, self.medium)):
            if criterion is not None and (why := criterion.holds(facts)):
                return tier, f"the pathway's {tier}-risk criterion: {why}"
        return RiskTier.LOW, "none of the pathway's high- or medium-risk criteria holds"


AnyOf.model_rebuild()
AllOf.model_rebuild()
