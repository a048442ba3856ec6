"""The follow-up KPIs (docs/kpis.md): real journeys and tickets counted end to end, each
definition's edge cases on rows written directly, and the API and CLI that report them."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import AsyncIterator, Callable
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlmodel import Session, col, select
from temporalio.testing import WorkflowEnvironment

from suifang.core.api import create_app
from suifang.core.errors import ValidationFailed
from suifang.core.models import (
    Alert,
    AuditLog,
    Department,
    Encounter,
    Enrollment,
    Message,
    Patient,
    Ticket,
    TicketEvent,
    TouchpointRecord,
)
from suifang.core.pathways import resolve_plan
from suifang.core.runtime import Runtime
from suifang.core.security.auth import Scope, create_user, issue_token
from suifang.tickets import service as ticket_service
from suifang.tickets.core import ActorAction, PatientEvent
from suifang.workflows import journey_service
from suifang.workflows.intake import EnrollmentOut, register_discharge
from suifang.workflows.journey_commands import AnswerEvent, ControlEvent
from suifang.workflows.kpis import (
    KPI_DEFINITIONS,
    KpiReport,
    compute_kpis,
    filter_problems,
    period_window,
)
from suifang.workflows.simulation import normal_answers
from tests.workflows.test_journey_workflow import abnormal_answers, discharge, settle

SHANGHAI = ZoneInfo("Asia/Shanghai")
UTC = dt.UTC
NOVEMBER = {"start": dt.date(2026, 11, 1), "end": dt.date(2026, 11, 30)}
LATER = dt.datetime(2027, 1, 15, tzinfo=UTC)
"""A report time long after November: every outcome of November is known."""


def local(
    month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, *, year: int = 0
) -> dt.datetime:
    """A Shanghai time around November 2026 (January is 2027), or in ``year``."""
    year = year or (2027 if month < 6 else 2026)
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=SHANGHAI)


def counts(report: KpiReport, key: str) -> tuple[int | None, int | None, int]:
    kpi = report.kpi(key)
    return kpi.numerator, kpi.denominator, kpi.pending


def november(session: Session, **options: Any) -> KpiReport:
    return compute_kpis(session, **NOVEMBER, **{"as_of": LATER, **options})


# --------------------------------------------------------------------------- rows


class Records:
    """Rows as the workflows write them, for the read-side edge cases."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.numbers = itertools.count(1)
        for code in ("cardiology", "orthopaedics", "nursing"):
            if session.get(Department, code) is None:
                session.add(Department(code=code, name_zh=code, name_en=code))
        session.commit()

    def _add(self, row: Any) -> Any:
        self.session.add(row)
        self.session.flush()
        return row

    def patient(self) -> Patient:
        number = next(self.numbers)
        return self._add(Patient(external_id=f"P-{number}", name=f"患者{number}"))

    def discharge(self, discharged_at: dt.datetime, department: str = "cardiology") -> Encounter:
        return self._add(
            Encounter(
                patient_id=self.patient().id,
                external_id=f"V-{next(self.numbers)}",
                department_code=department,
                discharged_at=discharged_at,
            )
        )

    def journey(
        self,
        discharged_at: dt.datetime,
        *,
        department: str = "cardiology",
        pathway: str = "pci",
        encounter: Encounter | None = None,
        enrolled_at: dt.datetime | None = None,
        status: str = "active",
        ended_at: dt.datetime | None = None,
        readmitted_at: dt.datetime | None = None,
    ) -> Enrollment:
        encounter = encounter or self.discharge(discharged_at, department)
        return self._add(
            Enrollment(
                patient_id=encounter.patient_id,
                encounter_id=encounter.id,  # type: ignore[arg-type]
                department_code=department,
                pathway_id=pathway,
                pathway_version=1,
                risk_tier="low",
                workflow_id=f"journey-{next(self.numbers)}",
                status=status,
                enrolled_at=enrolled_at or discharged_at,
                ended_at=ended_at,
                readmitted_at=readmitted_at,
            )
        )

    def touchpoint(
        self,
        enrollment: Enrollment,
        status: str,
        due_at: dt.datetime,
        answered_at: dt.datetime | None = None,
    ) -> TouchpointRecord:
        number = next(self.numbers)
        return self._add(
            TouchpointRecord(
                enrollment_id=enrollment.id,  # type: ignore[arg-type]
                key=f"tp{number}",
                touchpoint_id=f"tp{number}",
                day=number,
                status=status,
                due_at=due_at,
                answered_at=answered_at,
            )
        )

    def alert(self, enrollment: Enrollment, tier: str, created_at: dt.datetime) -> Alert:
        return self._add(
            Alert(
                event_key=f"alert-{next(self.numbers)}",
                enrollment_id=enrollment.id,  # type: ignore[arg-type]
                patient_id=enrollment.patient_id,
                rule_id="rule",
                tier=tier,
                priority="urgent",
                category="symptom",
                summary_zh="预警",
                summary_en="alert",
                created_at=created_at,
            )
        )

    def ticket(
        self,
        opened_at: dt.datetime,
        *,
        department: str | None = "cardiology",
        category: str = "medication",
        enrollment: Enrollment | None = None,
        **fields: Any,
    ) -> Ticket:
        patient_id = enrollment.patient_id if enrollment else self.patient().id
        return self._add(
            Ticket(
                workflow_id=f"ticket-{next(self.numbers)}",
                source="patient_message",
                patient_id=patient_id,  # type: ignore[arg-type]
                enrollment_id=enrollment.id if enrollment else None,
                category=category,
                department_code=department,
                tier="L2",
                priority="routine",
                summary="出院带的药吃完了",
                opened_at=opened_at,
                **{"status": "assigned", **fields},
            )
        )

    def score(self, ticket: Ticket, score: int, at: dt.datetime) -> None:
        seq = len(
            self.session.exec(select(TicketEvent).where(TicketEvent.ticket_id == ticket.id)).all()
        )
        self.session.add(
            TicketEvent(
                ticket_id=ticket.id,  # type: ignore[arg-type]
                seq=seq + 1,
                at=at,
                actor="patient",
                action="satisfaction",
                detail={"score": score},
            )
        )
        ticket.satisfaction = score
        self._add(ticket)


# --------------------------------------------------------------------------- definitions


def test_the_period_is_whole_calendar_days_in_the_hospitals_timezone(session: Session) -> None:
    rows = Records(session)
    journey = rows.journey(local(10, 20))
    # 07:00 on 1 Nov in Shanghai is still 31 Oct in UTC; midnight starting 1 Dec is 30 Nov.
    inside = [local(11, 1), local(11, 1, 7), local(11, 30, 23, 59, 59)]
    outside = [local(10, 31, 23, 59, 59), local(12, 1)]
    for at in inside + outside:
        rows.touchpoint(journey, "answered", at, answered_at=at)
        rows.alert(journey, "L2", at)
        rows.ticket(at, department=None, category="parking")
        rows.discharge(at)
    report = november(session)
    assert (report.window_start, report.window_end) == (
        dt.datetime(2026, 10, 31, 16, tzinfo=UTC),
        dt.datetime(2026, 11, 30, 16, tzinfo=UTC),
    )
    assert counts(report, "response_rate") == (3, 3, 0)
    assert counts(report, "alert_rate") == (3, 3, 0)
    assert report.kpi("alert_rate").value == 100.0
    assert counts(report, "alert_rate_l2")[0] == 3
    assert report.kpi("tickets_opened").value == 3
    assert report.tickets_by_category == {"parking": 3}
    assert counts(report, "discharges_enrolled") == (0, 3, 0)  # the journey's is in October


def test_coverage_response_and_lost_count_settled_outcomes_and_leave_the_rest_pending(
    session: Session,
) -> None:
    rows = Records(session)
    reached = rows.journey(local(11, 1))
    rows.touchpoint(reached, "answered", local(11, 4, 10), answered_at=local(11, 4, 12))
    rows.touchpoint(reached, "missed", local(11, 8, 10))
    rows.touchpoint(reached, "sent", local(11, 15, 10))  # still waiting for the answer
    in_flight = rows.journey(local(11, 17))
    rows.touchpoint(in_flight, "scheduled", local(11, 20, 10))
    never_sent = rows.journey(local(11, 6))
    rows.touchpoint(never_sent, "skipped", local(11, 9, 10))  # stopped before it went out
    enrolled_late = rows.journey(local(11, 1), enrolled_at=local(11, 25))
    rows.touchpoint(enrolled_late, "skipped", local(11, 4, 10))  # due before enrollment
    next_month = rows.journey(local(11, 29))
    rows.touchpoint(next_month, "answered", local(12, 2, 10), answered_at=local(12, 2, 11))
    for status, ended_at in (
        ("lost", local(11, 10)),
        ("completed", local(11, 12)),
        ("completed", local(11, 30, 23)),
        ("stopped", local(11, 20)),
        ("lost", local(12, 1, 0, 0, 1)),  # ended in December
    ):
        rows.journey(local(10, 1), status=status, ended_at=ended_at)

    report = november(session)
    assert counts(report, "follow_up_coverage") == (1, 2, 1)  # in flight: pending
    assert counts(report, "response_rate") == (1, 2, 0)  # the waiting question is left out
    assert counts(report, "lost_to_follow_up_rate") == (1, 4, 0)
    assert report.kpi("lost_to_follow_up_rate").value == 25.0
    assert report.kpi("lost_to_follow_up_rate").display == "25.0% (1/4)"

    # Reported on 12 Nov: later touchpoints are not due yet and count nowhere.
    early = november(session, as_of=local(11, 12).astimezone(UTC))
    assert counts(early, "follow_up_coverage") == (1, 2, 0)


def test_sla_outcomes_met_breached_and_pending(session: Session) -> None:
    rows = Records(session)
    opened = local(11, 10, 10)
    hours = lambda n: opened + dt.timedelta(hours=n)  # noqa: E731
    rows.ticket(opened, first_response_at=hours(0.5), resolved_at=hours(24))  # met
    rows.ticket(  # breaches recorded, answered late
        opened,
        first_response_at=hours(6),
        first_response_breached_at=hours(4),
        resolution_breached_at=hours(16),
        resolved_at=hours(30),
    )
    # Overdue with no breach recorded yet (the worker is behind): breached all the same.
    rows.ticket(opened, first_response_due=hours(4), resolution_due=hours(48))
    rows.ticket(  # still within its targets at the report time
        local(11, 30, 20), first_response_due=local(12, 1, 14), resolution_due=local(12, 3)
    )
    rows.ticket(opened, status="waiting_on_patient")  # clocks paused: no due time
    rows.ticket(  # reopened: resolution runs again
        opened,
        first_response_at=hours(1 / 3),
        resolution_due=local(12, 5),
        category="complaint",
    )
    rows.ticket(  # an L1 answer a department took over: its first response is due again
        opened,
        first_response_at=opened,
        first_response_due=local(12, 1, 18),
        resolution_due=local(12, 4),
    )
    rows.ticket(opened, department=None, first_response_at=opened, resolved_at=opened)  # L1

    report = november(session, as_of=local(12, 1, 12).astimezone(UTC))
    assert counts(report, "first_response_sla") == (2, 4, 3)
    assert counts(report, "resolution_sla") == (1, 3, 4)
    assert report.kpi("first_response_sla").value == 50.0
    # Minutes over the first-response outcomes known: 20, 30 and 360.
    assert counts(report, "time_to_first_response_median") == (None, 3, 0)
    assert report.kpi("time_to_first_response_median").value == 30.0
    assert report.kpi("time_to_first_response_p90").value == 360.0
    assert report.kpi("time_to_first_response_median").display == "30 min (n=3)"
    assert report.kpi("tickets_opened").value == 8
    assert report.tickets_by_department == {"cardiology": 7, "unrouted": 1}
    assert report.tickets_by_category == {"complaint": 1, "medication": 7}


def test_readmission_waits_for_the_30_day_window_and_counts_each_discharge_once(
    session: Session,
) -> None:
    rows = Records(session)
    readmitted = rows.journey(local(11, 2, 9), readmitted_at=local(11, 12))
    rows.journey(  # a second journey of the same discharge: one discharge, counted once
        local(11, 2, 9), encounter=session.get(Encounter, readmitted.encounter_id), pathway="x"
    )
    rows.journey(local(11, 3, 9))
    rows.journey(local(11, 4, 9), readmitted_at=local(12, 10))  # day 36: not a 30-day one
    rows.journey(local(11, 5, 9), readmitted_at=local(12, 5, 9))  # exactly 30 days
    rows.journey(local(11, 20, 9), readmitted_at=local(11, 22))  # window open on 10 Dec
    rows.discharge(local(11, 6))  # never enrolled: not followed up, not counted

    assert counts(november(session), "readmission_30d") == (3, 5, 0)
    on_10_december = november(session, as_of=local(12, 10).astimezone(UTC))
    assert counts(on_10_december, "readmission_30d") == (2, 4, 1)


def test_satisfaction_counts_each_tickets_latest_score_in_the_period(session: Session) -> None:
    rows = Records(session)
    for score in (5, 4, 2):
        rows.score(rows.ticket(local(11, 2)), score, local(11, 6))
    rescored = rows.ticket(local(11, 2))
    rows.score(rescored, 1, local(11, 7))
    rows.score(rescored, 3, local(11, 9))  # only the latest score counts
    rows.score(rows.ticket(local(11, 20)), 5, local(12, 1))  # scored in December
    rows.ticket(local(11, 3))  # never scored
    report = november(session)
    assert counts(report, "satisfaction_mean") == (14, 4, 0)
    assert report.kpi("satisfaction_mean").value == 3.5
    assert counts(report, "satisfaction_rate") == (2, 4, 0)


def test_department_scope_and_pathway_filters(session: Session) -> None:
    rows = Records(session)
    pci = rows.journey(local(11, 1), department="cardiology", pathway="pci")
    rows.touchpoint(pci, "answered", local(11, 4, 10), answered_at=local(11, 4, 11))
    rows.alert(pci, "L3", local(11, 4, 11))
    hip = rows.journey(local(11, 1), department="orthopaedics", pathway="hip-replacement")
    rows.touchpoint(hip, "missed", local(11, 4, 10))
    rows.ticket(local(11, 4, 11), department="cardiology", enrollment=pci)
    rows.ticket(local(11, 6), department="nursing", category="call_task", enrollment=hip)
    rows.ticket(local(11, 7), department="orthopaedics", category="wound")  # no journey
    rows.ticket(local(11, 8), department=None, category="parking")  # answered at L1

    cardiology = november(session, department="cardiology")
    assert counts(cardiology, "response_rate") == (1, 1, 0)
    assert cardiology.kpi("alert_rate_l3").value == 100.0
    assert cardiology.tickets_by_department == {"cardiology": 1}

    scoped = november(session, departments=["orthopaedics", "nursing"])
    assert counts(scoped, "response_rate") == (0, 1, 0)
    assert counts(scoped, "alert_rate") == (0, 0, 0)
    assert scoped.kpi("alert_rate").value is None  # nothing answered: no rate, not zero
    assert scoped.tickets_by_department == {"nursing": 1, "orthopaedics": 1}  # not unrouted
    assert counts(scoped, "discharges_enrolled") == (1, 1, 0)

    outside = november(session, departments=["orthopaedics"], department="cardiology")
    assert counts(outside, "response_rate") == (0, 0, 0)
    assert outside.kpi("tickets_opened").value == 0

    hips = november(session, pathway="hip-replacement")
    assert counts(hips, "response_rate") == (0, 1, 0)
    assert hips.tickets_by_category == {"call_task": 1}  # tickets without a journey drop out
    assert counts(hips, "discharges_enrolled") == (1, 2, 0)

    everything = november(session)
    assert everything.kpi("tickets_opened").value == 4
    assert everything.tickets_by_department["unrouted"] == 1


def test_bad_periods_and_filters_say_what_is_wrong(session: Session) -> None:
    Records(session)
    with pytest.raises(ValidationFailed, match=r"starts \(2026-12-01\) after it ends"):
        compute_kpis(session, start=dt.date(2026, 12, 1), end=dt.date(2026, 11, 1))
    with pytest.raises(ValidationFailed, match="unknown IANA timezone 'Mars/Olympus'"):
        period_window(dt.date(2026, 11, 1), dt.date(2026, 11, 30), "Mars/Olympus")
    with pytest.raises(ValidationFailed, match="out of range"):
        period_window(dt.date(2026, 11, 1), dt.date.max, "Asia/Shanghai")
    assert filter_problems(session, department="nowhere", pathway="pcx", pathways=["pci"]) == {
        "department": "unknown department 'nowhere'",
        "pathway": "unknown pathway 'pcx' (known: pci)",
    }
    assert filter_problems(session, department="cardiology", pathway="pci", pathways=["pci"]) == {}


# --------------------------------------------------------------------------- API and CLI


def _two_departments(session: Session) -> tuple[Enrollment, Enrollment]:
    """November 2025 (long past, so no outcome depends on when the test runs)."""
    rows = Records(session)
    pci = rows.journey(local(11, 1, year=2025), department="cardiology", pathway="pci")
    rows.touchpoint(pci, "answered", local(11, 4, 10, year=2025), local(11, 4, 11, year=2025))
    hip = rows.journey(
        local(11, 1, year=2025),
        department="orthopaedics",
        pathway="hip-replacement",
        status="lost",
        ended_at=local(11, 12, year=2025),
    )
    rows.touchpoint(hip, "missed", local(11, 4, 10, year=2025))
    rows.ticket(local(11, 4, 11, year=2025), department="cardiology", enrollment=pci)
    rows.ticket(local(11, 6, year=2025), department="orthopaedics", enrollment=hip)
    session.commit()
    return pci, hip


def _token(session: Session, username: str, role: str, departments: list[str] | None = None) -> str:
    user = create_user(
        session, username=username, display_name=username, role=role, departments=departments
    )
    if role == "integrator":  # a feed's token: its departments and every integrator scope
        return issue_token(session, user, name="test", departments=departments, scopes=list(Scope))[
            0
        ]
    return issue_token(session, user, name="test")[0]


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def api(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://suifang.test") as client:
        yield client


async def test_the_kpi_api_reports_only_the_callers_departments(
    runtime: Runtime, api: httpx.AsyncClient
) -> None:
    with Session(runtime.engine, expire_on_commit=False) as session:
        _, hip = _two_departments(session)
        admin = _token(session, "admin.kpi", "admin")
        cardiology = _token(session, "agent.xin", "agent", ["cardiology"])
        orthopaedics = _token(session, "nurse.gu", "nurse", ["orthopaedics"])
        cardiology_nurse = _token(session, "nurse.xin", "nurse", ["cardiology"])
        integrator = _token(session, "his", "integrator", ["cardiology"])
    period = {"from": "2025-11-01", "to": "2025-11-30"}

    async def report(token: str, **params: str) -> dict[str, Any]:
        response = await api.get("/reports/kpis", params={**period, **params}, headers=_auth(token))
        assert response.status_code == 200, response.text
        body = response.json()
        body["by_key"] = {k["key"]: k for k in body["kpis"]}
        return body

    everything = await report(admin)
    response_rate = everything["by_key"]["response_rate"]
    assert (response_rate["numerator"], response_rate["denominator"]) == (1, 2)
    assert response_rate["display"] == "50.0% (1/2)"
    assert "answered" in response_rate["definition"]
    assert everything["tickets_by_department"] == {"cardiology": 1, "orthopaedics": 1}
    assert (everything["timezone"], everything["window_start"]) == (
        "Asia/Shanghai",
        "2025-10-31T16:00:00Z",
    )
    assert list(everything["by_key"]) == list(KPI_DEFINITIONS)

    own = await report(cardiology)
    assert own["scope"] == ["cardiology"]
    assert own["by_key"]["response_rate"]["display"] == "100.0% (1/1)"
    assert own["tickets_by_department"] == {"cardiology": 1}
    assert (await report(cardiology, department="cardiology"))["by_key"] == own["by_key"]
    refused = await api.get(
        "/reports/kpis", params={**period, "department": "orthopaedics"}, headers=_auth(cardiology)
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == (
        "department 'orthopaedics' is outside your departments (cardiology)"
    )
    assert (await api.get("/reports/kpis", params=period)).status_code == 401
    not_allowed = await api.get("/reports/kpis", params=period, headers=_auth(integrator))
    assert not_allowed.status_code == 403
    assert "reports:read" in not_allowed.json()["error"]["message"]

    for params, message in (
        ({"from": "2025-11-31", "to": "2025-11-30"}, "query.from: "),
        ({"from": "November", "to": "2025-11-30"}, "query.from: "),
        ({"to": "2025-11-30"}, "query.from: Field required"),
        ({"from": "2025-12-01", "to": "2025-11-01"}, "query.from (2025-12-01) is after query.to"),
        ({"from": "2025-11-01", "to": "9999-12-31"}, "is out of range"),
        ({**period, "department": "nowhere"}, "query.department: unknown department 'nowhere'"),
        ({**period, "pathway": "pcx"}, "query.pathway: unknown pathway 'pcx' (known: "),
    ):
        bad = await api.get("/reports/kpis", params=params, headers=_auth(admin))
        assert bad.status_code == 422, params
        assert message in bad.json()["error"]["message"], bad.json()

    # A readmission learnt of after the journey ended (here: lost) is still recorded, by
    # the patient's department only, and then counts as a 30-day readmission.
    readmitted = {"at": "2025-11-20T09:00:00+08:00"}
    url = f"/journeys/{hip.id}/readmitted"
    outsider = await api.post(url, json=readmitted, headers=_auth(cardiology_nurse))
    assert outsider.status_code == 404
    naive = await api.post(url, json={"at": "2025-11-20T09:00:00"}, headers=_auth(orthopaedics))
    assert naive.status_code == 422
    assert "give a timezone" in naive.json()["error"]["message"]
    early = await api.post(
        url, json={"at": "2025-10-20T09:00:00+08:00"}, headers=_auth(orthopaedics)
    )
    assert early.status_code == 422
    assert "before the discharge" in early.json()["error"]["message"]
    recorded = await api.post(url, json=readmitted, headers=_auth(orthopaedics))
    assert recorded.status_code == 200, recorded.text
    with Session(runtime.engine) as session:
        stored = session.get(Enrollment, hip.id)
        assert stored is not None
        assert stored.readmitted_at == local(11, 20, 9, year=2025)
        assert stored.status == "lost"
        audited = session.exec(
            select(AuditLog.actor, AuditLog.action, AuditLog.resource_id).where(
                AuditLog.patient_id == hip.patient_id, AuditLog.outcome == "ok"
            )
        ).all()
    assert ("nurse.gu", "POST /journeys/{enrollment_id}/{action}", f"{hip.id},readmitted") in (
        audited
    )
    readmission = (await report(admin))["by_key"]["readmission_30d"]
    assert (readmission["numerator"], readmission["denominator"]) == (1, 2)


def test_report_kpis_prints_a_table_and_json(
    runtime: Runtime, cli: Callable[..., tuple[int, str, str]]
) -> None:
    with Session(runtime.engine, expire_on_commit=False) as session:
        _, hip = _two_departments(session)
    period = ("report", "kpis", "--from", "2025-11-01", "--to", "2025-11-30")

    code, out, err = cli(*period)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["period", "2025-11-01", "–", "2025-11-30", "(Asia/Shanghai)"]
    response_line = next(line for line in lines if line.startswith("Response rate"))
    assert response_line.split()[3:5] == ["50.0%", "1/2"]
    lost_line = next(line for line in lines if line.startswith("Lost to follow-up"))
    assert lost_line.split()[4:6] == ["100.0%", "1/1"]
    assert "tickets by department" in lines

    code, out, err = cli(*period, "--department", "cardiology", "--pathway", "pci", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert (report["department"], report["pathway"]) == ("cardiology", "pci")
    by_key = {k["key"]: k for k in report["kpis"]}
    assert by_key["response_rate"]["display"] == "100.0% (1/1)"
    assert report["tickets_by_department"] == {"cardiology": 1}

    for args, message in (
        (("--from", "2025-11-31", "--to", "2025-11-30"), "--from: '2025-11-31' is not a date"),
        (("--from", "2025-12-01", "--to", "2025-11-30"), "--from (2025-12-01) is after --to"),
        ((*period[2:], "--department", "nowhere"), "--department: unknown department"),
        ((*period[2:], "--pathway", "pcx"), "--pathway: unknown pathway 'pcx'"),
    ):
        code, out, err = cli("report", "kpis", *args)
        assert code != 0
        assert err.startswith(f"suifang: error: {message}"), err
        assert "Traceback" not in err

    # The CLI records a readmission after the fact too, with when it happened.
    code, _, err = cli("journeys", "readmitted", str(hip.id), "--at", "2025-11-20T09:00")
    assert (code, err.strip()) == (
        2,
        "suifang: error: --at: give a timezone, e.g. 2026-11-20T10:00+08:00",
    )
    code, out, err = cli("journeys", "readmitted", str(hip.id), "--at", "2025-11-20T09:00+08:00")
    assert code == 0, err
    with Session(runtime.engine) as session:
        stored = session.get(Enrollment, hip.id)
        assert stored is not None
        assert stored.readmitted_at == local(11, 20, 9, year=2025)
        actions = session.exec(
            select(AuditLog.action).where(AuditLog.actor.startswith("cli:"))
        ).all()  # type: ignore[attr-defined]
    assert "cli report kpis" in actions
    assert "cli journeys readmitted" in actions


# --------------------------------------------------------------------------- end to end


async def test_kpis_count_exactly_what_real_journeys_and_tickets_did(
    runtime: Runtime, journey_worker: WorkflowEnvironment
) -> None:
    env = journey_worker
    t0 = await env.get_current_time()
    pci, general = runtime.catalog.get("pci"), runtime.catalog.get("general")

    async def enroll(template: Any) -> EnrollmentOut:
        return await register_discharge(runtime, discharge(runtime, template, t0))

    answering = await enroll(pci)  # answers day 3 and 7, then is readmitted
    silent = await enroll(pci)  # never answers: lost, and its call task breaches its SLA
    abnormal = await enroll(pci)  # an abnormal day-3 answer: alert and ticket; then stopped
    completing = await enroll(general)  # answers everything: completed
    refusing = await enroll(pci)  # do-not-contact: nothing goes out
    with Session(runtime.engine) as session:
        patient = session.get(Patient, refusing.patient_id)
        assert patient is not None
        patient.do_not_contact = True
        session.add(patient)
        session.commit()
    plans = {
        e.enrollment_id: resolve_plan(runtime.catalog.get(e.pathway_id), e.risk_tier, e.groups)
        for e in (answering, silent, abnormal, completing)
    }
    script: dict[int, dict[str, str]] = {
        answering.enrollment_id: {"day3": "normal", "day7": "normal"},
        silent.enrollment_id: {"day3": "silent", "day7": "silent"},
        abnormal.enrollment_id: {"day3": "abnormal"},
        completing.enrollment_id: {s.key: "normal" for s in completing.schedule},
    }
    due = {
        (e.enrollment_id, s.key): s.due_at
        for e in (answering, silent, abnormal, completing)
        for s in e.schedule
        if s.key in script[e.enrollment_id]
    }
    workflow_ids = {
        e.enrollment_id: e.workflow_id for e in (answering, silent, abnormal, completing)
    }
    answered = 0
    alert_ticket_id = 0
    abnormal_rule = None
    for at in sorted(set(due.values())):
        now = await env.get_current_time()
        if at > now:
            await env.sleep(at - now + dt.timedelta(minutes=1))
        for (enrollment_id, key), when in due.items():
            if when != at:
                continue
            await settle(lambda e=enrollment_id, k=key: _touchpoint_status(runtime, e, k) == "sent")
            action = script[enrollment_id][key]
            planned = plans[enrollment_id].touchpoint(key.split("#")[0])
            if action == "silent" or not planned.expects_answer:
                continue
            if action == "abnormal":
                answers, abnormal_rule = abnormal_answers(plans[enrollment_id], key)
            else:
                questionnaire = planned.questionnaire
                answers = (
                    normal_answers(questionnaire, plans[enrollment_id].alert_rules)
                    if questionnaire
                    else {}
                )
            await env.client.get_workflow_handle(workflow_ids[enrollment_id]).signal(
                "answer",
                AnswerEvent(answers=answers, text=None if answers else "都好", touchpoint_key=key),
            )
            await settle(
                lambda e=enrollment_id, k=key: _touchpoint_status(runtime, e, k) == "answered"
            )
            answered += 1
            if action == "abnormal":
                alert_ticket_id = await _work_the_alert_ticket(runtime, enrollment_id)
                await _control(runtime, enrollment_id, "stop")
        if at == due[(answering.enrollment_id, "day7")]:
            await _control(runtime, answering.enrollment_id, "readmitted")
    await settle(lambda: _enrollment(runtime, refusing.enrollment_id).status == "stopped")
    await settle(lambda: _enrollment(runtime, completing.enrollment_id).status == "completed")

    # A month after discharge: the silent patient is lost and the call task it opened has
    # breached both clocks; a nurse answers late, resolves it, and the patient is unhappy.
    now = await env.get_current_time()
    await env.sleep(max(t0 + dt.timedelta(days=31) - now, dt.timedelta(0)))
    call_task = await settle(lambda: _tickets(runtime, silent.enrollment_id))
    call_task_id = call_task[0].id
    await settle(lambda: _ticket(runtime, call_task_id).resolution_breached_at)
    for action in ("reply", "resolve"):
        await _act(runtime, call_task_id, action)
    await _score(runtime, call_task_id, 2)
    await settle(lambda: _ticket(runtime, call_task_id).status == "reopened")
    as_of = await env.get_current_time()

    local_t0 = t0.astimezone(SHANGHAI).date()
    with Session(runtime.engine) as session:
        report = compute_kpis(
            session, start=local_t0, end=local_t0 + dt.timedelta(days=40), as_of=as_of
        )
        alerts = session.exec(
            select(Alert).where(Alert.enrollment_id == abnormal.enrollment_id)
        ).all()
    alert_ticket, call_task_row = _ticket(runtime, alert_ticket_id), _ticket(runtime, call_task_id)

    assert answered == 2 + 1 + len(
        [
            s
            for s in completing.schedule
            if plans[completing.enrollment_id].touchpoint(s.key.split("#")[0]).expects_answer
        ]
    )
    # The refusing journey stops at its first contact attempt. The shared time-skipping clock
    # has run on by however long earlier tests slept, so that attempt may be a festival
    # greeting before day 3 (then no touchpoint ever fell due) or the day-3 question.
    with Session(runtime.engine) as session:
        refused = session.exec(
            select(Message).where(Message.patient_id == refusing.patient_id)
        ).all()
    assert [m.status for m in refused] == ["suppressed"]  # nothing went out
    due_for_refusing = 1 if refused[0].kind == "touchpoint" else 0
    assert counts(report, "follow_up_coverage") == (4, 4 + due_for_refusing, 0)
    assert counts(report, "discharges_enrolled") == (5, 5, 0)
    assert counts(report, "response_rate") == (answered, answered + 2, 0)
    assert counts(report, "lost_to_follow_up_rate") == (1, 5, 0)
    assert abnormal_rule is not None
    assert abnormal_rule.id in {a.rule_id for a in alerts}
    assert counts(report, "alert_rate") == (len(alerts), answered, 0)
    for tier in ("L1", "L2", "L3"):
        raised = sum(1 for a in alerts if a.tier == tier)
        assert counts(report, f"alert_rate_{tier.lower()}") == (raised, answered, 0)
    assert counts(report, "first_response_sla") == (1, 2, 0)
    assert counts(report, "resolution_sla") == (1, 2, 0)
    waits = sorted(
        (t.first_response_at - t.opened_at).total_seconds() / 60  # type: ignore[operator]
        for t in (alert_ticket, call_task_row)
    )
    assert waits[0] < 15 < 4 * 60 < waits[1]  # one within its target, one long after
    assert report.kpi("time_to_first_response_median").value == round(sum(waits) / 2, 2)
    assert report.kpi("time_to_first_response_p90").value == round(waits[1], 2)
    assert report.kpi("tickets_opened").value == 2
    assert report.tickets_by_category == {alert_ticket.category: 1, "call_task": 1}
    assert report.tickets_by_department == {"cardiology": 1, "nursing": 1}
    assert counts(report, "readmission_30d") == (1, 5, 0)
    assert counts(report, "satisfaction_mean") == (5 + 2, 2, 0)
    assert counts(report, "satisfaction_rate") == (1, 2, 0)

    # The same journeys seen by one department and by one pathway.
    with Session(runtime.engine) as session:
        general_medicine = compute_kpis(
            session,
            start=local_t0,
            end=local_t0 + dt.timedelta(days=40),
            as_of=as_of,
            department="general_medicine",
        )
        pci_only = compute_kpis(
            session,
            start=local_t0,
            end=local_t0 + dt.timedelta(days=40),
            as_of=as_of,
            pathway="pci",
        )
    assert counts(general_medicine, "response_rate") == (answered - 3, answered - 3, 0)
    assert counts(general_medicine, "lost_to_follow_up_rate") == (0, 1, 0)
    assert general_medicine.kpi("tickets_opened").value == 0
    assert counts(pci_only, "response_rate") == (3, 5, 0)
    assert counts(pci_only, "readmission_30d") == (1, 4, 0)
    assert pci_only.kpi("tickets_opened").value == 2


def _touchpoint_status(runtime: Runtime, enrollment_id: int, key: str) -> str | None:
    with Session(runtime.engine) as session:
        return session.exec(
            select(TouchpointRecord.status).where(
                TouchpointRecord.enrollment_id == enrollment_id, TouchpointRecord.key == key
            )
        ).first()


def _enrollment(runtime: Runtime, enrollment_id: int) -> Enrollment:
    with Session(runtime.engine) as session:
        row = session.get(Enrollment, enrollment_id)
        assert row is not None
        return row


def _ticket(runtime: Runtime, ticket_id: int) -> Ticket:
    with Session(runtime.engine) as session:
        row = session.get(Ticket, ticket_id)
        assert row is not None
        return row


def _tickets(runtime: Runtime, enrollment_id: int) -> list[Ticket]:
    with Session(runtime.engine) as session:
        return list(
            session.exec(
                select(Ticket)
                .where(
                    Ticket.enrollment_id == enrollment_id, col(Ticket.department_code).is_not(None)
                )
                .order_by(col(Ticket.id))
            ).all()
        )


async def _control(runtime: Runtime, enrollment_id: int, action: str) -> None:
    with Session(runtime.engine) as session:
        await journey_service.control_journey(
            runtime,
            session,
            enrollment_id,
            ControlEvent(action=action),  # type: ignore[arg-type]
        )
    await settle(lambda: _enrollment(runtime, enrollment_id).status == "stopped")


async def _act(runtime: Runtime, ticket_id: int, action: str) -> None:
    with Session(runtime.engine) as session:
        await ticket_service.act_on_ticket(
            runtime,
            session,
            ticket_id,
            ActorAction(action=action, actor="nurse.wang", text="已电话联系患者"),  # type: ignore[arg-type]
        )


async def _score(runtime: Runtime, ticket_id: int, score: int) -> None:
    with Session(runtime.engine) as session:
        await ticket_service.patient_event(
            runtime, session, ticket_id, PatientEvent(kind="satisfaction", score=score)
        )


async def _work_the_alert_ticket(runtime: Runtime, enrollment_id: int) -> int:
    """Answered at once (within its SLA), resolved, and scored 5 by the patient."""
    ticket_id = (await settle(lambda: _tickets(runtime, enrollment_id)))[0].id
    await settle(lambda: _ticket(runtime, ticket_id).first_response_due)
    for action in ("reply", "resolve"):
        await _act(runtime, ticket_id, action)
    await _score(runtime, ticket_id, 5)
    await settle(lambda: _ticket(runtime, ticket_id).status == "closed")
    return ticket_id
