"""Exam and lab results, from HL7 ORU^R01 or a FHIR DiagnosticReport: observations in the
patient's record, and follow-up of abnormal findings (检后随访).

Each result whose code is a known indicator's LOINC code, its id or its name and whose value is
a number becomes an observation: trend data beside the questionnaire answers, idempotent by
report and test (a corrected value sent later under the same report is not recorded again:
the first stays). A result flagged abnormal (H, L, A, … — HL7 table 0078 and FHIR's
ObservationInterpretation share the codes) outside an inpatient stay enrols the patient in the
post-check-up pathway; the enrollment's encounter carries the findings as its diagnosis text,
which the pathway's messages name (``{{ finding }}``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
from pathlib import Path

from sqlmodel import Session

from suifang.core.db import in_thread, insert_for
from suifang.core.models import Observation
from suifang.core.pathway_checks import Indicator, load_indicators
from suifang.core.runtime import Runtime
from suifang.workflows.intake import (
    DischargeIn,
    EncounterIn,
    EnrollmentOut,
    PatientIn,
    register_discharge,
    update_patient,
)
from suifang.workflows.tags import apply_tags

__all__ = [
    "ABNORMAL_FLAGS",
    "POST_CHECKUP_PATHWAY",
    "ResultFields",
    "ResultProblem",
    "ResultReport",
    "ResultsOutcome",
    "finding_summary",
    "record_results",
]

POST_CHECKUP_PATHWAY = "post-checkup"

# mg/dL → mmol/L, for the indicators registered in mmol/L that labs also report in mg/dL.
_MG_PER_DL = {
    "glucose_fasting": 18.016,
    "glucose_random": 18.016,
    "glucose_postprandial_2h": 18.016,
    "ldl": 38.67,
}
ABNORMAL_FLAGS = frozenset({"H", "HH", "L", "LL", "A", "AA", ">", "<", "HU", "LU"})
"""Interpretation codes (HL7 v2 table 0078, FHIR ObservationInterpretation) that make a result
a finding to follow up."""
_DIRECTION = {
    "H": "偏高",
    "HH": "危急偏高",
    ">": "偏高",
    "HU": "偏高",
    "L": "偏低",
    "LL": "危急偏低",
}
_DIRECTION |= {"<": "偏低", "LU": "偏低", "A": "异常", "AA": "危急异常"}


@dataclasses.dataclass(frozen=True)
class ResultFields:
    """One result: an OBX of an ORU^R01, or an Observation of a DiagnosticReport."""

    code: str
    name: str
    value: str
    units: str | None
    reference_range: str | None
    abnormal_flag: str | None
    observed_at: dt.datetime | None
    withdrawn: bool = False
    """Cancelled or entered in error (HL7 OBX-11 X/W, FHIR status cancelled/entered-in-error):
    neither recorded nor a finding."""


@dataclasses.dataclass(frozen=True)
class ResultReport:
    """A report's results, whatever carried them."""

    results: list[ResultFields]
    report_id: str
    """The report's own id (order number, visit, message id): one enrollment per report."""
    taken_at: dt.datetime | None
    inpatient: bool
    source: str
    """hl7 or fhir: the observations' source."""


class ResultProblem(ValueError):
    """A result that cannot be right: a unit that is not the indicator's, a value outside its
    range (a unit mistake, usually). ``index`` is the result's position, from 1."""

    def __init__(self, index: int, field: str, message: str) -> None:
        super().__init__(message)
        self.index = index
        self.field = field
        """unit or value"""


@dataclasses.dataclass(frozen=True)
class ResultsOutcome:
    patient_id: int
    recorded: int
    """Observations written (results that are not a known indicator or not a number: none)."""
    enrolled: EnrollmentOut | None
    """The post-check-up enrollment the findings started (or found), if any."""


@functools.lru_cache(maxsize=4)
def _registry(extra: Path | None) -> dict[str, Indicator]:
    return load_indicators(extra)


def _indicator_of(result: ResultFields, registry: dict[str, Indicator]) -> str | None:
    code = result.code.strip()
    for name, indicator in registry.items():
        if code in (indicator.loinc, name) or result.name.strip() in (
            indicator.name.get("zh-CN"),
            indicator.name.get("en"),
        ):
            return name
    return None


def _value(
    index: int, result: ResultFields, indicator: str, spec: Indicator
) -> tuple[float, str] | None:
    """The reading in the indicator's unit, or None when it is not a number (阴性, 见报告)."""
    try:
        value = float(result.value)
    except ValueError:
        return None
    unit = (result.units or "").replace(" ", "")
    wanted = spec.unit.replace(" ", "")
    if unit and wanted and unit.lower() != wanted.lower():
        if unit.lower() == "mg/dl" and indicator in _MG_PER_DL:
            value = round(value / _MG_PER_DL[indicator], 2)
        else:
            raise ResultProblem(
                index, "unit", f"unit {result.units!r} for {indicator} (expected {spec.unit})"
            )
    if not spec.min <= value <= spec.max:
        raise ResultProblem(
            index,
            "value",
            f"{indicator} {value:g} is outside {spec.min:g}–{spec.max:g} {spec.unit}",
        )
    return value, spec.unit


def finding_summary(findings: list[ResultFields]) -> str:
    """The abnormal results in words, as the follow-up messages name them."""
    parts = []
    for result in findings:
        direction = _DIRECTION.get(result.abnormal_flag or "", "异常")
        reading = f"{result.value}{(' ' + result.units) if result.units else ''}".strip()
        reference = f",参考 {result.reference_range}" if result.reference_range else ""
        parts.append(f"{result.name} {reading}({direction}{reference})")
    return "；".join(parts)[:512]


async def record_results(
    runtime: Runtime, report: ResultReport, patient: PatientIn, *, key: str, department: str
) -> ResultsOutcome:
    """Record ``report``'s results for ``patient``; enrol them if a finding needs follow-up.

    ``key`` identifies the message or Bundle (idempotency); ``department`` the one that follows
    the findings up (the check-up centre unless the HIS says otherwise). Raises
    :class:`ResultProblem` before anything is written.
    """
    registry = _registry(runtime.settings.indicators_file)
    when = report.taken_at or dt.datetime.now(dt.UTC)
    readings: list[dict[str, object]] = []
    report_key = hashlib.sha256(report.report_id.encode()).hexdigest()[:32]
    for index, result in enumerate(report.results, 1):
        if result.withdrawn:
            continue
        indicator = _indicator_of(result, registry)
        if indicator is None:
            continue
        measured = _value(index, result, indicator, registry[indicator])
        if measured is None:
            continue
        readings.append(
            {
                # By report and test, not by message: a report sent again (a resend under a
                # new control id, the final after the preliminary) records nothing twice.
                "event_key": f"{report.source}:{report_key}:{result.code}"[:160],
                "indicator": indicator,
                "value": measured[0],
                "unit": measured[1][:16] or None,
                "observed_at": (result.observed_at or when).astimezone(dt.UTC),
                "source": report.source,
            }
        )
    patient_id = await in_thread(update_patient, runtime, patient)
    if readings:
        await in_thread(_insert, runtime, patient_id, readings)
    findings = [r for r in report.results if r.abnormal_flag in ABNORMAL_FLAGS and not r.withdrawn]
    enrolled = None
    if findings and not report.inpatient:
        encounter = EncounterIn(
            external_id=report.report_id,
            kind="checkup",
            department=department,
            diagnosis_text=finding_summary(findings),
            discharged_at=when,
        )
        enrolled = await register_discharge(
            runtime,
            DischargeIn(patient=patient, encounter=encounter, pathway=POST_CHECKUP_PATHWAY),
            idempotency_key=f"{report.source}:{key}",
        )
    return ResultsOutcome(patient_id, len(readings), enrolled)


def _insert(runtime: Runtime, patient_id: int, readings: list[dict[str, object]]) -> None:
    table = Observation.__table__  # type: ignore[attr-defined]
    with runtime.engine.begin() as connection:
        statement = insert_for(connection.dialect.name, table).on_conflict_do_nothing(
            index_elements=["event_key", "indicator"]
        )
        connection.execute(statement, [{**r, "patient_id": patient_id} for r in readings])
    # New readings can give or take a tag (血压控制不佳 from the clinic's readings too).
    with Session(runtime.engine) as session:
        apply_tags(
            session,
            patient_id,
            reason="results",
            indicators_file=runtime.settings.indicators_file,
            tags_file=runtime.settings.tags_file,
        )
        session.commit()
