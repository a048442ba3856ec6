"""A ticket's read-model writes: a save overwrites the row and adds only new history lines and
notes, a staff notice is recorded (and its supervisor e-mailed) once, whatever is retried."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import pytest
from aiosmtpd.controller import Controller
from sqlmodel import Session, col, select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from suifang.core.enums import Priority, TicketSource, TicketStatus, Tier
from suifang.core.models import Department, StaffNotification, Ticket, TicketEvent, TicketNote
from suifang.core.runtime import Runtime
from suifang.core.triage import TriageResult
from suifang.tickets.activities import StaffNoticeInput, TicketActivities
from suifang.tickets.core import TicketEventRecord, TicketSnapshot, TicketState
from suifang.tickets.opening import build_ticket
from tests.plugins.channels.test_email import Mailbox, free_port
from tests.tickets.test_ticket_workflow import patient

OPENED = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)


def open_ticket_row(runtime: Runtime) -> int:
    with Session(runtime.engine, expire_on_commit=False) as session:
        start = build_ticket(
            session,
            patient_id=patient(runtime),
            source=TicketSource.PATIENT_MESSAGE,
            summary="伤口渗液，需要换药吗？",
            triage=TriageResult(
                category="wound", urgency=Priority.ROUTINE, confidence=0.9,
                suggested_tier=Tier.L2, clinical=True,
            ),
            opened_at=OPENED,
        )  # fmt: skip
        return start.ticket_id


def routed_and_answered(ticket_id: int) -> TicketSnapshot:
    """What the workflow saves after routing a ticket to surgery and a nurse's first reply."""
    at = OPENED + dt.timedelta(minutes=20)
    return TicketSnapshot(
        ticket_id=ticket_id,
        state=TicketState(
            status=TicketStatus.IN_PROGRESS, tier=Tier.L2, priority=Priority.URGENT,
            category="wound", department="orthopaedics", assignee="nurse.li",
            first_response_at=at, breached_at={"first_response": at}, red_flags=["渗液"],
        ),
        first_response_due=OPENED + dt.timedelta(minutes=15),
        resolution_due=OPENED + dt.timedelta(hours=8),
        first_response_breached_at=at,
        resolution_breached_at=None,
        events=[
            TicketEventRecord(
                seq=1, at=OPENED, actor="system", action="route", to_status="routed",
                reason="category wound → orthopaedics", detail={"due": OPENED},
            ),
            TicketEventRecord(
                seq=2, at=at, actor="nurse.li", action="reply", from_status="routed",
                to_status="in_progress", note="请今天来换药室换药。", visible_to_patient=True,
            ),
        ],
    )  # fmt: skip


async def test_a_save_overwrites_the_row_and_adds_each_line_once_when_retried(
    runtime: Runtime,
) -> None:
    ticket_id = open_ticket_row(runtime)
    snapshot = routed_and_answered(ticket_id)
    activities = TicketActivities(runtime)
    # The second run is the retry of a save whose first attempt committed.
    for _ in range(2):
        ActivityEnvironment().run(activities.sync_ticket, snapshot)

    with Session(runtime.engine) as session:
        row = session.get(Ticket, ticket_id)
        assert row is not None
        assert (row.status, row.priority, row.department_code, row.assignee) == (
            "in_progress", "urgent", "orthopaedics", "nurse.li",
        )  # fmt: skip
        assert (row.first_response_at, row.first_response_breached_at, row.breached) == (
            OPENED + dt.timedelta(minutes=20), OPENED + dt.timedelta(minutes=20), True,
        )  # fmt: skip
        assert row.red_flags == ["渗液"]
        assert not row.sla_paused
        # What build_ticket wrote and a save does not touch stays.
        assert (row.summary, row.opened_at) == ("伤口渗液，需要换药吗？", OPENED)
        events = session.exec(
            select(TicketEvent)
            .where(TicketEvent.ticket_id == ticket_id)
            .order_by(col(TicketEvent.seq))
        ).all()
        assert [(e.seq, e.action, e.reason) for e in events] == [
            (1, "route", "category wound → orthopaedics"), (2, "reply", None),
        ]  # fmt: skip
        assert events[0].detail == {"due": OPENED.isoformat()}
        [note] = session.exec(select(TicketNote).where(TicketNote.ticket_id == ticket_id)).all()
        assert (note.seq, note.author, note.body, note.visible_to_patient) == (
            2, "nurse.li", "请今天来换药室换药。", True,
        )  # fmt: skip

    # A later save carries only what is new; a patient-wait pauses the SLA in the row.
    waiting = snapshot.model_copy(
        update={
            "state": snapshot.state.model_copy(update={"status": TicketStatus.WAITING_ON_PATIENT}),
            "events": [
                TicketEventRecord(
                    seq=3, at=OPENED + dt.timedelta(hours=1), actor="nurse.li", action="wait",
                    from_status="in_progress", to_status="waiting_on_patient",
                )
            ],
        }
    )  # fmt: skip
    ActivityEnvironment().run(activities.sync_ticket, waiting)
    with Session(runtime.engine) as session:
        row = session.get(Ticket, ticket_id)
        assert row is not None
        assert (row.status, row.sla_paused) == ("waiting_on_patient", True)
        seqs = session.exec(select(TicketEvent.seq).where(TicketEvent.ticket_id == ticket_id))
        assert sorted(seqs.all()) == [1, 2, 3]


async def test_a_save_for_a_ticket_the_database_lacks_fails_for_good(runtime: Runtime) -> None:
    with pytest.raises(ApplicationError, match="ticket 999999 missing") as failure:
        ActivityEnvironment().run(
            TicketActivities(runtime).sync_ticket, routed_and_answered(999_999)
        )
    assert failure.value.non_retryable


@pytest.fixture
def supervisor_mailbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Mailbox]:
    """A real SMTP server on loopback that the runtime's email channel sends to."""
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    for name, value in {
        "FROM_ADDRESS": "followup@hospital.example",
        "HOST": "127.0.0.1",
        "PORT": str(controller.port),
        "USE_STARTTLS": "false",
    }.items():
        monkeypatch.setenv(f"SUIFANG_CHANNEL_EMAIL_{name}", value)
    try:
        yield mailbox
    finally:
        controller.stop()


async def test_a_staff_notice_is_recorded_and_mailed_once_when_retried(
    runtime: Runtime, supervisor_mailbox: Mailbox
) -> None:
    ticket_id = open_ticket_row(runtime)
    with Session(runtime.engine) as session:
        surgery = session.get(Department, "orthopaedics")
        assert surgery is not None
        surgery.supervisor_email = "head.nurse@hospital.example"
        session.add(surgery)
        session.commit()
    notice = StaffNoticeInput(
        event_key=f"ticket-{ticket_id}:7",
        ticket_id=ticket_id,
        kind="breach",
        clock="first_response",
        department="orthopaedics",
        due_at=OPENED + dt.timedelta(minutes=15),
        actions=["notify_supervisor"],
    )
    activities = TicketActivities(runtime)
    delivered = [await ActivityEnvironment().run(activities.notify_staff, notice) for _ in "12"]

    assert delivered == ["email", "email"]
    [mail] = supervisor_mailbox.received
    assert mail["rcpt_tos"] == ["head.nurse@hospital.example"]
    assert mail["message"]["Subject"] == f"[suifang] SLA breach: ticket {ticket_id}"
    assert "breached its first_response SLA, due 2026-11-20 09:15 UTC" in str(
        mail["message"].get_body(("plain",)).get_content()
    )
    with Session(runtime.engine) as session:
        [row] = session.exec(
            select(StaffNotification).where(StaffNotification.ticket_id == ticket_id)
        ).all()
    assert (row.kind, row.department_code, row.delivered_via, row.actions) == (
        "breach", "orthopaedics", "email", ["notify_supervisor"],
    )  # fmt: skip


async def test_a_staff_notice_without_a_supervisor_address_is_still_recorded(
    runtime: Runtime, supervisor_mailbox: Mailbox
) -> None:
    ticket_id = open_ticket_row(runtime)
    notice = StaffNoticeInput(
        event_key=f"ticket-{ticket_id}:3",
        ticket_id=ticket_id,
        kind="warning",
        clock="resolution",
        department="logistics",
        due_at=OPENED + dt.timedelta(hours=8),
    )
    assert await ActivityEnvironment().run(TicketActivities(runtime).notify_staff, notice) is None
    assert supervisor_mailbox.received == []
    with Session(runtime.engine) as session:
        [row] = session.exec(
            select(StaffNotification).where(StaffNotification.ticket_id == ticket_id)
        ).all()
    assert (row.kind, row.clock, row.delivered_via) == ("warning", "resolution", None)


def test_tickets_show_numbers_the_history_and_says_whether_each_target_was_met(
    runtime: Runtime, cli: Callable[..., tuple[int, str, str]]
) -> None:
    ticket_id = open_ticket_row(runtime)
    answered, resolved = OPENED + dt.timedelta(minutes=10), OPENED + dt.timedelta(hours=9)
    with Session(runtime.engine) as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None
        ticket.first_response_due = OPENED + dt.timedelta(minutes=15)
        ticket.first_response_at = answered
        ticket.resolution_due = OPENED + dt.timedelta(hours=8)
        ticket.resolution_breached_at = OPENED + dt.timedelta(hours=8)
        ticket.resolved_at = resolved
        session.add(ticket)
        # The workflow's seq also counts notes and timers: 1, 4 and 9 are the history.
        for seq, action in ((1, "route"), (4, "reply"), (9, "resolve")):
            session.add(
                TicketEvent(
                    ticket_id=ticket_id, seq=seq, at=OPENED, actor="nurse.li", action=action
                )
            )
        session.commit()
    code, out, err = cli("tickets", "show", str(ticket_id))
    assert code == 0, err
    first = next(line for line in out.splitlines() if "first response due" in line)
    assert first.endswith("11-20 17:15 met at 11-20 17:10")  # on the hospital's clock (+08:00)
    assert "BREACHED" in next(line for line in out.splitlines() if "resolution due" in line)
    history = out.split("history", 1)[1].splitlines()
    numbers = [line.split()[0] for line in history if line.strip()[:1].isdigit()]
    assert numbers == ["1", "2", "3"]
