"""Intake: register a discharge and enroll the patient in a pathway, in one idempotent call.

One call carries the patient, the encounter and (optionally) the pathway. The patient and
encounter are upserted by their HIS ids, the pathway is chosen by its match rules when not
named, the readmission risk is assessed, the template is resolved for the patient's tier and
groups, and the journey workflow is started. Calling again with the same idempotency key —
or the same encounter and pathway — returns the same enrollment and starts nothing twice.
If Temporal is unreachable the enrollment is kept as ``pending`` and starts on the retry.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import uuid
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, EmailStr, Field, field_validator, model_validator
from sqlalchemy import Executable
from sqlalchemy.engine import Connection
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, select
from temporalio.client import WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from suifang.core.contacts import SYSTEM_PATTERN, known_systems
from suifang.core.db import in_session_thread, in_thread, insert_for, update_by_id, utcnow
from suifang.core.enums import JourneyStatus, RiskTier
from suifang.core.errors import NotFoundError, StartupError, ValidationFailed
from suifang.core.models import (
    ContactPoint,
    Department,
    Encounter,
    Enrollment,
    Patient,
    PatientTag,
)
from suifang.core.pathways import JourneyPlan, PathwayTemplate, resolve_plan
from suifang.core.risk import RiskAssessment, RiskInput
from suifang.core.risk_criteria import RiskFacts
from suifang.core.runtime import Runtime
from suifang.core.security.crypto import blind_index, identifier_index
from suifang.core.timestamps import PlausibleInstant
from suifang.core.timezones import IanaTimezone
from suifang.workflows.greetings import greeting_occasions
from suifang.workflows.journey import (
    JourneyInput,
    PatientJourneyWorkflow,
    journey_workflow_id,
)
from suifang.workflows.journey_commands import GreetingOccasion
from suifang.workflows.journey_core import JourneySetup, preview_schedule
from suifang.workflows.tags import apply_tags, tag_groups

__all__ = [
    "DischargeIn",
    "EncounterIn",
    "EnrollmentOut",
    "PatientIn",
    "ScheduledTouchpoint",
    "journey_department",
    "register_discharge",
    "resume_enrollment",
    "start_journey",
    "update_patient",
]

Locale = Literal["zh-CN", "en"]


class ContactIn(BaseModel):
    """A contact point in any system a channel declares (``dingtalk_userid``, ``wecom_userid``)
    or a built-in one (phone, email, wechat, app)."""

    system: str = Field(pattern=SYSTEM_PATTERN, examples=["dingtalk_userid"])
    value: str = Field(min_length=1, max_length=256)


class PatientIn(BaseModel):
    external_id: str = Field(min_length=1, max_length=64, description="MRN / 病历号.")
    name: str = Field(min_length=1, max_length=128)
    sex: Literal["male", "female", "other", "unknown"] | None = None
    birth_date: dt.date | None = None
    locale: Locale = "zh-CN"
    timezone: IanaTimezone = "Asia/Shanghai"
    phone: str | None = Field(None, pattern=r"^\+?[0-9][0-9 \-]{5,19}$")
    email: EmailStr | None = None
    wechat_openid: str | None = Field(None, max_length=64)
    app_user_id: str | None = Field(None, max_length=64)
    id_number: str | None = Field(None, pattern=r"^[0-9]{17}[0-9Xx]$", description="身份证号")
    address: str | None = Field(None, max_length=256)
    contacts: list[ContactIn] = Field(
        default_factory=list,
        max_length=20,
        description="Contacts in any system; phone, email, wechat_openid and app_user_id are "
        "shorthand for the built-in ones.",
    )
    preferred_channels: list[str] = Field(default_factory=list)
    contact_consent: bool | None = Field(
        None,
        description=(
            "Separate consent to be contacted (PIPL). Omitted: a new patient is taken as "
            "consenting; a known patient keeps what is recorded (a feed that does not carry "
            "consent never overrides a withdrawal)."
        ),
    )
    consent_source: str | None = Field(None, max_length=64)

    @field_validator("birth_date")
    @classmethod
    def _past(cls, value: dt.date | None) -> dt.date | None:
        if value is not None and not dt.date(1880, 1, 1) <= value <= dt.date.today():
            raise ValueError("birth date must be in the past")
        return value


class EncounterIn(BaseModel):
    external_id: str = Field(min_length=1, max_length=64, description="Visit number.")
    kind: Literal["inpatient", "checkup", "outpatient", "day_surgery"] = "inpatient"
    department: str = Field(min_length=1, max_length=64, description="Department code.")
    ward: str | None = Field(None, max_length=64)
    diagnosis_codes: list[str] = Field(default_factory=list, max_length=50)
    diagnosis_text: str | None = Field(None, max_length=512)
    comorbidity_codes: list[str] = Field(default_factory=list, max_length=50)
    procedure_codes: list[str] = Field(default_factory=list, max_length=50)
    procedure_text: str | None = Field(None, max_length=512)
    attending_doctor: str | None = Field(None, max_length=128)
    admitted_at: PlausibleInstant | None = None
    discharged_at: PlausibleInstant
    length_of_stay_days: float | None = Field(None, ge=0, le=3650)
    emergency_admission: bool = False
    ed_visits_6_months: int = Field(0, ge=0, le=365)
    charlson_index: int | None = Field(None, ge=0, le=40)
    pregnant: bool = False
    discharge_disposition: str | None = Field(None, max_length=64)

    @model_validator(mode="after")
    def _order(self) -> EncounterIn:
        if self.admitted_at and self.admitted_at > self.discharged_at:
            raise ValueError("admitted_at is after discharged_at")
        return self


class DischargeIn(BaseModel):
    patient: PatientIn
    encounter: EncounterIn
    pathway: str | None = Field(None, description="Pathway id; omitted → chosen by match rules.")
    pathway_version: int | None = Field(None, ge=1)
    risk_tier: RiskTier | None = Field(None, description="Override the assessed tier.")
    time_scale: float = Field(
        1.0,
        ge=1,
        le=100_000,
        description="Demo: 1440 = a day a minute (1 is real time; a journey cannot run slower).",
    )
    idempotency_key: str | None = Field(None, max_length=128)


class ScheduledTouchpoint(BaseModel):
    key: str
    day: int
    due_at: dt.datetime


class EnrollmentOut(BaseModel):
    enrollment_id: int
    workflow_id: str
    patient_id: int
    encounter_id: int
    pathway_id: str
    pathway_version: int
    variants: list[str]
    department: str
    risk_tier: str
    risk_score: float | None
    risk_reasons: list[str]
    groups: list[str]
    status: str
    created: bool = Field(description="False when this call found an existing enrollment.")
    schedule: list[ScheduledTouchpoint] = Field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class _PatientFacts:
    """What intake reads back about the patient it upserted."""

    id: int
    sex: str | None
    birth_date: dt.date | None
    timezone: str
    locale: str


def _upsert_patient(connection: Connection, data: PatientIn) -> _PatientFacts:
    """Insert or update the patient by MRN, with statements rather than the ORM's unit of
    work: intake is on every discharge's path. Given fields replace stored ones; omitted
    optional ones keep what is stored; consent is re-stamped only when it changes."""
    mrn_hash = identifier_index("mrn", data.external_id)
    existing = connection.execute(_PATIENT_BY_MRN, {"mrn_hash": mrn_hash}).first()
    now = utcnow()
    values: dict[str, Any] = {
        "name": data.name,
        "locale": data.locale,
        "timezone": data.timezone,
        "updated_at": now,
    }
    optional = {
        "sex": data.sex,
        "birth_date": data.birth_date,
        "preferred_channels": data.preferred_channels,
        "address": data.address,
    }
    values |= {name: value for name, value in optional.items() if value}
    if data.id_number:
        number = data.id_number.upper()
        values |= {"id_number": number, "id_number_hash": blind_index("id_number", number)}
    consent = data.contact_consent
    if existing is None and consent is None:
        consent = True
    if consent is not None and (
        existing is None or existing.consent_at is None or existing.contact_consent != consent
    ):
        values |= {
            "contact_consent": consent,
            "consent_at": now,
            "consent_source": data.consent_source or "intake",
        }
    if existing is None:
        patient_id = connection.execute(
            _INSERT_PATIENT, {"external_id": data.external_id, "created_at": now, **values}
        ).scalar_one()
        facts = _PatientFacts(patient_id, data.sex, data.birth_date, data.timezone, data.locale)
    else:
        connection.execute(update_by_id(Patient, "patient"), {"patient": existing.id, **values})
        facts = _PatientFacts(
            existing.id,
            data.sex or existing.sex,
            data.birth_date or existing.birth_date,
            data.timezone,
            data.locale,
        )
    contacts = [
        {
            "patient_id": facts.id,
            "system": system,
            "value": str(value),
            "value_hash": blind_index(system, str(value)),
            "created_at": now,
            "preferred_at": now,
        }
        for system, value in (
            ("phone", data.phone),
            ("email", data.email),
            ("wechat", data.wechat_openid),
            ("app", data.app_user_id),
            *((c.system, c.value) for c in data.contacts),
        )
        if value
    ]
    if contacts:
        connection.execute(_restate_contacts(connection.dialect.name), contacts)
    return facts


def check_contact_systems(runtime: Runtime, data: PatientIn, where: str = "patient") -> None:
    """Every contact's system is one a loaded channel delivers to (or a built-in one)."""
    if not data.contacts:
        return
    known = known_systems(runtime.plugins.channel_classes().values())
    for index, contact in enumerate(data.contacts):
        if contact.system not in known:
            raise ValidationFailed(
                f"{where}.contacts[{index}].system: no channel delivers to {contact.system!r} "
                f"(known: {', '.join(sorted(known))})"
            )


def update_patient(runtime: Runtime, data: PatientIn) -> int:
    """Insert or update a patient and their contacts by MRN, with no encounter (an HIS
    demographics update, a registration); returns the patient's id. Runs in the caller's
    thread: call it through :func:`~suifang.core.db.in_thread` from async code."""
    check_contact_systems(runtime, data)
    with runtime.engine.begin() as connection:
        return _upsert_patient(connection, data).id


@functools.cache
def _restate_contacts(dialect: str) -> Executable:
    """Insert the discharge's contacts; one the patient already has becomes the one in use
    again (the feed says it is current), unless staff retired it (suifang.core.contacts)."""
    table = ContactPoint.__table__  # type: ignore[attr-defined]
    insert = insert_for(dialect, table)
    return insert.on_conflict_do_update(
        index_elements=["patient_id", "system", "value_hash"],
        set_={"preferred_at": insert.excluded.preferred_at},
        where=table.c.retired_at.is_(None),
    )


_PATIENTS = Patient.__table__  # type: ignore[attr-defined]
_PATIENT_BY_MRN = sa.select(
    _PATIENTS.c.id,
    _PATIENTS.c.sex,
    _PATIENTS.c.birth_date,
    _PATIENTS.c.contact_consent,
    _PATIENTS.c.consent_at,
).where(_PATIENTS.c.external_id_hash == sa.bindparam("mrn_hash"))  # MRNs are encrypted
_INSERT_PATIENT = sa.insert(_PATIENTS).returning(_PATIENTS.c.id)


_PLANS: dict[tuple[str, int, str, tuple[str, ...]], tuple[PathwayTemplate, JourneyPlan]] = {}


def _plan_for(template: PathwayTemplate, tier: str, groups: list[str]) -> JourneyPlan:
    """``resolve_plan``, once per template, tier and groups: plans are immutable, and one plan
    object shared by the journeys it serves is one schedule index (journey_core), not many."""
    key = (template.id, template.version, str(tier), tuple(groups))
    cached = _PLANS.get(key)
    if cached is not None and cached[0] is template:
        return cached[1]
    plan = resolve_plan(template, tier, groups)
    if len(_PLANS) >= 256:
        _PLANS.clear()
    _PLANS[key] = (template, plan)
    return plan


def _department_exists(session: Session, code: str) -> bool:
    return session.connection().execute(_DEPARTMENT, {"code": code}).first() is not None


_DEPARTMENT = sa.select(Department.__table__.c.code).where(  # type: ignore[attr-defined]
    Department.__table__.c.code == sa.bindparam("code")  # type: ignore[attr-defined]
)


def _upsert_encounter(
    connection: Connection, patient: _PatientFacts, data: EncounterIn
) -> tuple[int, float | None, bool]:
    """The encounter's id and length of stay, and whether it is new (statements, as above)."""
    visit_hash = identifier_index("visit", data.external_id)
    existing = connection.execute(_ENCOUNTER_BY_VISIT, {"visit_hash": visit_hash}).first()
    if existing is not None and existing.patient_id != patient.id:
        raise ValidationFailed(
            f"encounter.external_id {data.external_id!r} already belongs to another patient"
        )
    values = data.model_dump(exclude={"department"}) | {"department_code": data.department}
    if values["length_of_stay_days"] is None and data.admitted_at:
        values["length_of_stay_days"] = round(
            (data.discharged_at - data.admitted_at).total_seconds() / 86400, 2
        )
    if existing is None:
        encounter_id = connection.execute(
            _INSERT_ENCOUNTER, {"patient_id": patient.id, "created_at": utcnow(), **values}
        ).scalar_one()
        return encounter_id, values["length_of_stay_days"], True
    connection.execute(update_by_id(Encounter, "encounter"), {"encounter": existing.id, **values})
    return existing.id, values["length_of_stay_days"], False


_ENCOUNTERS = Encounter.__table__  # type: ignore[attr-defined]
_ENCOUNTER_BY_VISIT = sa.select(_ENCOUNTERS.c.id, _ENCOUNTERS.c.patient_id).where(
    _ENCOUNTERS.c.external_id_hash == sa.bindparam("visit_hash")  # visit numbers are encrypted
)
_INSERT_ENCOUNTER = sa.insert(_ENCOUNTERS).returning(_ENCOUNTERS.c.id)


def _journey_department(session: Session, template: PathwayTemplate, encounter: EncounterIn) -> str:
    """A journey belongs to its pathway's department when that department exists, else to the
    encounter's."""
    if template.department and (
        template.department == encounter.department
        or _department_exists(session, template.department)
    ):
        return template.department
    return encounter.department


def journey_department(runtime: Runtime, data: DischargeIn) -> str:
    """The department the journey of this discharge will belong to, before it is registered
    (a scoped integrator token may enroll only into its own departments)."""
    with Session(runtime.engine) as session:
        return _journey_department(session, _choose_pathway(runtime, data, session), data.encounter)


def _held_tags(session: Session, patient: PatientIn) -> list[str]:
    """The auto-tags a known patient holds when a discharge arrives (none for a new one)."""
    return list(
        session.exec(
            select(PatientTag.tag)
            .join(Patient, Patient.id == PatientTag.patient_id)
            .where(Patient.external_id_hash == identifier_index("mrn", patient.external_id))
        )
    )


def _choose_pathway(runtime: Runtime, data: DischargeIn, session: Session) -> PathwayTemplate:
    catalog = runtime.catalog
    if data.pathway:
        template = catalog.get(data.pathway, data.pathway_version)
        if catalog.is_retired(template):
            raise ValidationFailed(
                f"pathway: {template.id} version {template.version} is retired; enroll into "
                f"the current version ({catalog.get(template.id).version})"
                if template.id in catalog.ids()
                else f"pathway: {template.id} version {template.version} is retired"
            )
        return template
    template = catalog.match(
        diagnosis_codes=data.encounter.diagnosis_codes,
        procedure_codes=data.encounter.procedure_codes,
        department=data.encounter.department,
        encounter_kind=data.encounter.kind,
        tags=_held_tags(session, data.patient),
    )
    if template is None:
        raise ValidationFailed(
            "no pathway matches this discharge's diagnoses, procedures and department; "
            f"name one in `pathway` (known: {', '.join(catalog.ids())})"
        )
    return template


def _pathway_criteria(
    template: PathwayTemplate,
    risk: RiskAssessment,
    patient: _PatientFacts,
    encounter: EncounterIn,
    length_of_stay_days: float | None,
) -> RiskAssessment:
    """The tier the pathway's own ``risk:`` criteria choose, where the built-in LACE index
    assessed it (a hospital's risk plugin still wins); LACE stays among the reasons."""
    if template.risk is None or risk.method != "LACE":
        return risk
    facts = RiskFacts(
        age=RiskFacts.age_at(patient.birth_date, encounter.discharged_at.date()),
        sex=patient.sex,
        pregnant=encounter.pregnant,
        diagnosis_codes=encounter.diagnosis_codes,
        procedure_codes=encounter.procedure_codes,
        length_of_stay_days=length_of_stay_days,
        department=encounter.department,
        lace=risk.score,
        ed_visits_6_months=encounter.ed_visits_6_months,
        emergency_admission=encounter.emergency_admission,
    )
    tier, reason = template.risk.tier_for(facts)
    lace = f"LACE {risk.score:g} ({risk.tier})" if risk.score is not None else "LACE"
    return risk.model_copy(
        update={
            "tier": tier,
            "method": "pathway criteria",
            "reasons": [reason, f"{lace} not used: the pathway's criteria decide"],
        }
    )


def assess(
    runtime: Runtime,
    patient: _PatientFacts,
    encounter: EncounterIn,
    length_of_stay_days: float | None,
    pathway_id: str,
) -> RiskAssessment:
    return runtime.plugins.assess_risk(
        RiskInput(
            birth_date=patient.birth_date,
            sex=patient.sex,
            pregnant=encounter.pregnant,
            admitted_at=encounter.admitted_at,
            discharged_at=encounter.discharged_at,
            length_of_stay_days=length_of_stay_days,
            emergency_admission=encounter.emergency_admission,
            diagnosis_codes=encounter.diagnosis_codes,
            comorbidity_codes=encounter.comorbidity_codes,
            charlson_index=encounter.charlson_index,
            ed_visits_6_months=encounter.ed_visits_6_months,
            department=encounter.department,
            pathway_id=pathway_id,
        )
    )


def _greetings(
    plan: JourneyPlan, birth_date: dt.date | None, discharged_at: dt.datetime
) -> tuple[list[GreetingOccasion], dt.date | None]:
    if not plan.greetings:
        return [], None

    start = discharged_at.date()
    if plan.open_ended:
        until = start + dt.timedelta(days=365)
    else:
        last_day = max(
            (t.day if t.day is not None else (t.every.until_day or 0) if t.every else 0)
            for t in plan.touchpoints
        )
        longest_wait = max(t.answer_wait for t in plan.touchpoints)
        until = start + dt.timedelta(days=last_day) + longest_wait
    occasions = greeting_occasions(start, until, birth_date=birth_date)
    return [GreetingOccasion(date=o.date, occasion=o.id) for o in occasions], until


def _output(
    enrollment: Enrollment,
    discharged_at: dt.datetime,
    created: bool,
    plan: JourneyPlan | None,
    timezone: str,
) -> EnrollmentOut:
    schedule = []
    if plan is not None:
        schedule = [
            ScheduledTouchpoint(key=key, day=day, due_at=due)
            for key, day, due in preview_schedule(plan, discharged_at, timezone=timezone, limit=20)
        ]
    return EnrollmentOut(
        enrollment_id=enrollment.id,  # type: ignore[arg-type]
        workflow_id=enrollment.workflow_id,
        patient_id=enrollment.patient_id,
        encounter_id=enrollment.encounter_id,
        pathway_id=enrollment.pathway_id,
        pathway_version=enrollment.pathway_version,
        variants=enrollment.variants,
        department=enrollment.department_code,
        risk_tier=enrollment.risk_tier,
        risk_score=enrollment.risk_score,
        risk_reasons=enrollment.risk_reasons,
        groups=enrollment.groups,
        status=enrollment.status,
        created=created,
        schedule=schedule,
    )


async def register_discharge(
    runtime: Runtime, data: DischargeIn, *, idempotency_key: str | None = None
) -> EnrollmentOut:
    """Upsert patient and encounter, enroll, start the journey. Safe to call again.

    The database work runs in a thread, and its session is closed before Temporal is called:
    a request waiting on Temporal holds no connection, and a slow statement stops no one else.
    """
    enrolled = await in_thread(_enroll, runtime, data, idempotency_key)
    return await _start(runtime, enrolled)


@dataclasses.dataclass
class _Enrolled:
    """An enrollment as intake saved or found it, with the journey to start if it has none."""

    enrollment: Enrollment
    setup: JourneySetup | None
    """None: the enrollment's journey was started before."""
    discharged_at: dt.datetime
    created: bool
    plan: JourneyPlan | None
    timezone: str

    def output(self) -> EnrollmentOut:
        return _output(self.enrollment, self.discharged_at, self.created, self.plan, self.timezone)


async def _start(runtime: Runtime, enrolled: _Enrolled) -> EnrollmentOut:
    if enrolled.setup is not None:
        await start_journey(runtime, enrolled.enrollment, enrolled.setup)
    return enrolled.output()


def _enroll(runtime: Runtime, data: DischargeIn, idempotency_key: str | None) -> _Enrolled:
    check_contact_systems(runtime, data.patient)
    key = idempotency_key or data.idempotency_key
    with Session(runtime.engine, expire_on_commit=False) as session:
        if key is not None:
            existing = session.exec(
                select(Enrollment).where(Enrollment.idempotency_key == key)
            ).first()
            if existing is not None:
                return _resume(session, runtime, existing)
        if not _department_exists(session, data.encounter.department):
            known = ", ".join(session.exec(select(Department.code)).all())
            raise ValidationFailed(
                f"encounter.department: unknown department {data.encounter.department!r} "
                f"(known: {known})"
            )
        template = _choose_pathway(runtime, data, session)
        connection = session.connection()
        patient = _upsert_patient(connection, data.patient)
        encounter_id, length_of_stay, new_encounter = _upsert_encounter(
            connection, patient, data.encounter
        )
        # A new encounter has no enrollments to find.
        existing = (
            None
            if new_encounter
            else session.exec(
                select(Enrollment).where(
                    Enrollment.encounter_id == encounter_id, Enrollment.pathway_id == template.id
                )
            ).first()
        )
        if existing is not None:
            session.commit()
            return _resume(session, runtime, existing)
        risk = assess(runtime, patient, data.encounter, length_of_stay, template.id)
        risk = _pathway_criteria(template, risk, patient, data.encounter, length_of_stay)
        tier = data.risk_tier or risk.tier
        # What the record already says of the patient (a previous stay's readings, missed
        # follow-ups) can choose a variant: the tags are groups named tag:<id>.
        tags = apply_tags(
            session,
            patient.id,
            reason="intake",
            indicators_file=runtime.settings.indicators_file,
            tags_file=runtime.settings.tags_file,
        )
        groups = [*risk.groups, *tag_groups(tags)]
        plan = _plan_for(template, tier, groups)
        discharged_at = data.encounter.discharged_at
        greetings, greetings_until = _greetings(plan, patient.birth_date, discharged_at)
        values: dict[str, Any] = {
            "patient_id": patient.id,
            "encounter_id": encounter_id,
            "department_code": _journey_department(session, template, data.encounter),
            "pathway_id": template.id,
            "pathway_version": template.version,
            "variants": plan.variants,
            "risk_tier": tier,
            "risk_score": risk.score,
            "risk_method": risk.method if data.risk_tier is None else f"{risk.method} (overridden)",
            "risk_reasons": risk.reasons,
            "groups": groups,
            "status": JourneyStatus.PENDING,
            "time_scale": data.time_scale,
            "idempotency_key": key,
            "enrolled_at": utcnow(),
        }
        # The workflow id names the enrollment's id, which the insert makes.
        enrollment_id = connection.execute(
            _INSERT_ENROLLMENT, {**values, "workflow_id": f"pending-{uuid.uuid4().hex}"}
        ).scalar_one()
        workflow_id = journey_workflow_id(enrollment_id, uuid.uuid4().hex[:8])
        connection.execute(
            update_by_id(Enrollment, "enrollment"),
            {"enrollment": enrollment_id, "workflow_id": workflow_id},
        )
        session.commit()
    # The row as loaded, without a load: starting the journey and the answer read it.
    enrollment = Enrollment(id=enrollment_id, workflow_id=workflow_id, **values)
    setup = JourneySetup(
        enrollment_id=enrollment.id,  # type: ignore[arg-type]
        patient_id=patient.id,
        plan=plan,
        discharged_at=discharged_at,
        timezone=patient.timezone,
        locale=patient.locale,
        time_scale=data.time_scale,
        greetings=greetings,
        greetings_until=greetings_until,
        continue_as_new_after=runtime.settings.journey_run_length,
    )
    return _Enrolled(enrollment, setup, discharged_at, True, plan, patient.timezone)


async def start_journey(
    runtime: Runtime, enrollment: Enrollment, setup: JourneySetup
) -> WorkflowHandle:
    """Start the enrollment's workflow (idempotent: an already running one is fine)."""
    try:
        client = await runtime.client()
        handle = await client.start_workflow(
            PatientJourneyWorkflow.run,
            JourneyInput(setup=setup),
            id=enrollment.workflow_id,
            task_queue=runtime.settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        handle = (await runtime.client()).get_workflow_handle(enrollment.workflow_id)
    except StartupError as exc:
        raise StartupError(
            f"the enrollment was saved (id {enrollment.id}) but its journey could not start: "
            f"{exc}; retry the same request (same idempotency key) to start it"
        ) from None
    if enrollment.status == JourneyStatus.PENDING:
        await in_thread(
            _update_enrollment,
            runtime,
            enrollment,
            status=JourneyStatus.ACTIVE,
            started_at=utcnow(),
        )
    return handle


def _update_enrollment(runtime: Runtime, enrollment: Enrollment, **values: Any) -> None:
    """Set columns of an enrollment with a statement, not the unit of work (intake is on
    every discharge's path), and on the object as if loaded so."""
    with runtime.engine.begin() as connection:
        connection.execute(
            update_by_id(Enrollment, "enrollment"), {"enrollment": enrollment.id, **values}
        )
    for name, value in values.items():
        set_committed_value(enrollment, name, value)


_INSERT_ENROLLMENT = sa.insert(Enrollment.__table__).returning(  # type: ignore[attr-defined]
    Enrollment.__table__.c.id  # type: ignore[attr-defined]
)


async def resume_enrollment(
    runtime: Runtime, session: Session, enrollment: Enrollment
) -> EnrollmentOut:
    """The enrollment as intake returns it, starting its journey if that never happened.

    ``session`` is read in a thread, and its transaction ended, before Temporal is called."""
    return await _start(runtime, await in_session_thread(session, _resume, runtime, enrollment))


def _resume(session: Session, runtime: Runtime, enrollment: Enrollment) -> _Enrolled:
    encounter = session.get(Encounter, enrollment.encounter_id)
    patient = session.get(Patient, enrollment.patient_id)
    if encounter is None or patient is None:
        raise NotFoundError(f"enrollment {enrollment.id} lost its patient or encounter")
    plan: JourneyPlan | None = None
    try:
        template = runtime.catalog.get(enrollment.pathway_id, enrollment.pathway_version)
        plan = resolve_plan(template, enrollment.risk_tier, enrollment.groups)
    except NotFoundError:
        plan = None
    setup = None
    if enrollment.status == JourneyStatus.PENDING:
        if plan is None:
            raise NotFoundError(
                f"pathway {enrollment.pathway_id} v{enrollment.pathway_version} "
                "is no longer registered"
            )
        greetings, until = _greetings(plan, patient.birth_date, encounter.discharged_at)
        setup = JourneySetup(
            enrollment_id=enrollment.id,  # type: ignore[arg-type]
            patient_id=patient.id,  # type: ignore[arg-type]
            plan=plan,
            discharged_at=encounter.discharged_at,
            timezone=patient.timezone,
            locale=patient.locale,
            time_scale=enrollment.time_scale,
            greetings=greetings,
            greetings_until=until,
            continue_as_new_after=runtime.settings.journey_run_length,
        )
    return _Enrolled(enrollment, setup, encounter.discharged_at, False, plan, patient.timezone)
