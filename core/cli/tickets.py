"""``suifang tickets``, ``routing`` and ``departments``: the department desk on the command line.

Everything the department API does, run as the operator (the CLI has the database and the
keys, so it acts with admin rights); every read or change of patient data is audited with
the actor ``cli:<operating-system user>``.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer
from sqlmodel import Session, col, select

from suifang.core.cli.context import (
    cli_actor,
    cli_audit,
    cli_run,
    cli_runtime,
    local_time,
    zone_name,
)
from suifang.core.cli.output import emit_json, print_kv, print_table
from suifang.core.enums import TicketSource, TicketStatus, Tier
from suifang.core.errors import ValidationFailed
from suifang.core.models import Department, DepartmentCreate, RoutingRule
from suifang.tickets import routing, service
from suifang.tickets.core import ActorAction

tickets_app = typer.Typer(
    help="Feedback tickets: queues, history and every department action.", no_args_is_help=True
)
routing_app = typer.Typer(
    help="The routing table: ticket category → department.", no_args_is_help=True
)
departments_app = typer.Typer(help="Departments.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(tickets_app, name="tickets")
    app.add_typer(routing_app, name="routing")
    app.add_typer(departments_app, name="departments")


@tickets_app.command("list")
def list_tickets(
    department: Annotated[str | None, typer.Option(help="Only this department's queue.")] = None,
    status: Annotated[TicketStatus | None, typer.Option()] = None,
    tier: Annotated[Tier | None, typer.Option()] = None,
    assignee: Annotated[str | None, typer.Option()] = None,
    due_within_hours: Annotated[float | None, typer.Option(help="Due within N hours.")] = None,
    breached: Annotated[bool | None, typer.Option("--breached/--not-breached")] = None,
    open_only: Annotated[bool, typer.Option("--open", help="Only unresolved tickets.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A ticket queue, soonest due first."""
    due_before = None
    if due_within_hours is not None:
        due_before = dt.datetime.now(dt.UTC) + dt.timedelta(hours=due_within_hours)
    with Session(cli_runtime().engine) as session:
        rows = service.list_tickets(
            session,
            departments=None,
            department=department,
            status=status,
            tier=tier,
            assignee=assignee,
            due_before=due_before,
            breached=breached,
            open_only=open_only,
            limit=limit,
        )
    cli_audit("tickets list", "tickets", [r.patient_id for r in rows])
    if as_json:
        emit_json(rows)
        return
    print_table(
        [
            "ID",
            "TIER",
            "PRIORITY",
            "STATUS",
            "DEPARTMENT",
            "CATEGORY",
            "ASSIGNEE",
            f"DUE ({zone_name()})",
            "SUMMARY",
        ],
        [
            (
                r.id,
                r.tier,
                r.priority,
                r.status + (" !" if r.breached else ""),
                r.department or "-",
                r.category,
                r.assignee or "",
                _due(r.first_response_due or r.resolution_due),
                r.summary[:30],
            )
            for r in rows
        ],
    )


def _due(when: dt.datetime | None) -> str:
    return local_time(when, "%m-%d %H:%M")


def _due_text(
    due: dt.datetime | None, breached: dt.datetime | None, done: dt.datetime | None = None
) -> str:
    """The target, and once it is decided, whether it was met: "met at …" or "BREACHED"."""
    text = _due(due)
    if breached is not None:
        return f"{text} BREACHED"
    if done is not None:
        return f"{text} met at {_due(done)}" if due is None or done <= due else f"{text} missed"
    return text


@tickets_app.command("show")
def show(ticket_id: int, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """A ticket, its SLA clocks and its full history."""
    with Session(cli_runtime().engine) as session:
        ticket = service.ticket_detail(session, ticket_id)
    cli_audit("tickets show", "tickets", [ticket.patient_id], str(ticket_id))
    if as_json:
        emit_json(ticket)
        return
    print_kv(
        [
            ("ticket", f"{ticket.id} ({ticket.workflow_id})"),
            ("patient", ticket.patient_id),
            ("source / category", f"{ticket.source} / {ticket.category}"),
            ("tier / priority", f"{ticket.tier} / {ticket.priority}"),
            (
                "status",
                ticket.status + (f" (assignee {ticket.assignee})" if ticket.assignee else ""),
            ),
            ("department", ticket.department or "-"),
            (
                "first response due",
                _due_text(
                    ticket.first_response_due,
                    ticket.first_response_breached_at,
                    ticket.first_response_at,
                ),
            ),
            (
                "resolution due",
                _due_text(ticket.resolution_due, ticket.resolution_breached_at, ticket.resolved_at),
            ),
            ("summary", ticket.summary),
        ]
    )
    print("\nhistory")
    print_table(
        ["#", f"AT ({zone_name()})", "ACTOR", "ACTION", "STATUS", "REASON"],
        [
            (
                number,  # the events in order (their seq also counts notes and timers)
                local_time(e.at, "%m-%d %H:%M:%S"),
                e.actor,
                e.action,
                f"{e.from_status or ''}→{e.to_status}" if e.to_status else "",
                e.reason or "",
            )
            for number, e in enumerate(ticket.events, start=1)
        ],
    )
    if ticket.notes:
        print("\nnotes and replies")
        print_table(
            ["#", "AUTHOR", "TO PATIENT", "TEXT"],
            [
                (n.seq, n.author, "yes" if n.visible_to_patient else "", n.body)
                for n in ticket.notes
            ],
        )


@tickets_app.command("create")
def create(
    patient_id: int,
    text: Annotated[str, typer.Argument(help="What the patient said.")],
    source: Annotated[TicketSource, typer.Option()] = TicketSource.PATIENT_MESSAGE,
    department: Annotated[str | None, typer.Option(help="Skip routing.")] = None,
) -> None:
    """Open a ticket for a patient's message, complaint or suggestion."""
    ticket = cli_run(
        service.open_ticket(
            cli_runtime(),
            service.TicketIn(
                patient_id=patient_id, text=text, source=source, department=department
            ),
            actor=cli_actor(),
        )
    )
    cli_audit("tickets create", "tickets", [patient_id], str(ticket.id))
    print(f"ticket {ticket.id}: {ticket.category}, {ticket.tier}/{ticket.priority}")


def _act(ticket_id: int, action: str, **fields: str | None) -> None:
    runtime = cli_runtime()
    with Session(runtime.engine) as session:
        detail = cli_run(
            service.act_on_ticket(
                runtime,
                session,
                ticket_id,
                ActorAction(action=action, actor=cli_actor(), **fields),  # type: ignore[arg-type]
            )
        )
    cli_audit(f"tickets {action}", "tickets", [detail.patient_id], str(ticket_id))
    where = detail.department or "-"
    print(f"ticket {ticket_id}: {action} done — now {detail.status}, {detail.tier}, {where}")


@tickets_app.command("ack")
def ack(
    ticket_id: int,
    as_: Annotated[
        str | None,
        typer.Option("--as", help="The clinician acknowledging (default: you), e.g. dr.wang."),
    ] = None,
    note: Annotated[str | None, typer.Option(help="An internal note, e.g. 'calling now'.")] = None,
) -> None:
    """Acknowledge an emergency's page: stops the escalation, makes you (or --as) the owner."""
    runtime = cli_runtime()
    with Session(runtime.engine) as session:
        detail = cli_run(
            service.act_on_ticket(
                runtime,
                session,
                ticket_id,
                ActorAction(action="acknowledge", actor=as_ or cli_actor(), text=note),
            )
        )
    cli_audit("tickets ack", "tickets", [detail.patient_id], str(ticket_id))
    print(
        f"ticket {ticket_id}: page acknowledged by {detail.acknowledged_by} — now {detail.status}"
    )


@tickets_app.command("claim")
def claim(ticket_id: int, assignee: Annotated[str | None, typer.Option()] = None) -> None:
    """Take a ticket (default: yourself)."""
    _act(ticket_id, "claim", assignee=assignee)


@tickets_app.command("reply")
def reply(ticket_id: int, text: str) -> None:
    """Reply to the patient (sent over their channels; meets the first-response target)."""
    _act(ticket_id, "reply", text=text)


@tickets_app.command("note")
def note(ticket_id: int, text: str) -> None:
    """An internal note (never sent to the patient)."""
    _act(ticket_id, "note", text=text)


@tickets_app.command("transfer")
def transfer(
    ticket_id: int, department: str, reason: Annotated[str | None, typer.Option()] = None
) -> None:
    """Hand the ticket to another department (its own SLA clock starts)."""
    _act(ticket_id, "transfer", department=department, text=reason)


@tickets_app.command("collaborate")
def collaborate(ticket_id: int, department: str, text: str) -> None:
    """Ask another department for help: opens a sub-task there."""
    _act(ticket_id, "collaborate", department=department, text=text)


@tickets_app.command("escalate")
def escalate(ticket_id: int, reason: Annotated[str | None, typer.Option()] = None) -> None:
    """Raise the tier (L1 → L2 → L3)."""
    _act(ticket_id, "escalate", text=reason)


@tickets_app.command("wait")
def wait(
    ticket_id: int,
    question: Annotated[str | None, typer.Option(help="Sent to the patient.")] = None,
) -> None:
    """Wait on the patient (the SLA clocks pause until they answer)."""
    _act(ticket_id, "wait_on_patient", text=question)


@tickets_app.command("resolve")
def resolve(
    ticket_id: int, text: Annotated[str | None, typer.Option(help="Told to the patient.")] = None
) -> None:
    """Resolve (the patient is told and asked for their satisfaction)."""
    _act(ticket_id, "resolve", text=text)


@tickets_app.command("reopen")
def reopen(ticket_id: int, reason: Annotated[str | None, typer.Option()] = None) -> None:
    """Reopen a resolved or closed ticket."""
    _act(ticket_id, "reopen", text=reason)


@routing_app.command("list")
def routing_list() -> None:
    """The routing table."""
    with Session(cli_runtime().engine) as session:
        rules = session.exec(select(RoutingRule).order_by(col(RoutingRule.category))).all()
    print_table(["CATEGORY", "DEPARTMENT"], [(r.category, r.department_code) for r in rules])


@routing_app.command("set")
def routing_set(category: str, department: str) -> None:
    """Route CATEGORY (one of the ticket categories) to DEPARTMENT."""
    with Session(cli_runtime().engine) as session:
        change = routing.set_rule(session, category, department)
    cli_audit("routing set", "routing", [], category, change.audit_detail())
    was = f" (was {change.previous})" if change.previous and change.previous != department else ""
    print(f"{category} → {department}{was}")


@routing_app.command("delete")
def routing_delete(category: str) -> None:
    """Remove CATEGORY's rule: its tickets then go to the patient's discharge department
    (clinical categories) or the patient services desk."""
    with Session(cli_runtime().engine) as session:
        change = routing.delete_rule(session, category)
    cli_audit("routing delete", "routing", [], category, change.audit_detail())
    print(f"{category}: rule to {change.previous} deleted")


@departments_app.command("list")
def departments_list() -> None:
    """Every department."""
    with Session(cli_runtime().engine) as session:
        rows = session.exec(select(Department).order_by(col(Department.code))).all()
    print_table(
        ["CODE", "名称", "NAME", "CLINICAL", "SUPERVISOR"],
        [
            (d.code, d.name_zh, d.name_en, "yes" if d.clinical else "", d.supervisor_email or "")
            for d in rows
        ],
    )


@departments_app.command("add")
def departments_add(
    code: str,
    name_zh: Annotated[str, typer.Option("--name-zh")],
    name_en: Annotated[str, typer.Option("--name-en")],
    clinical: Annotated[bool, typer.Option("--clinical/--non-clinical")] = True,
    supervisor_email: Annotated[str | None, typer.Option(help="Receives SLA breaches.")] = None,
) -> None:
    """Add a department (or update its names and supervisor)."""
    from pydantic import ValidationError

    try:
        data = DepartmentCreate(
            code=code,
            name_zh=name_zh,
            name_en=name_en,
            clinical=clinical,
            supervisor_email=supervisor_email,
        )
    except ValidationError as exc:
        raise ValidationFailed(
            "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())
        ) from None
    with Session(cli_runtime().engine) as session:
        department = session.get(Department, code) or Department.model_validate(data)
        for name, value in data.model_dump().items():
            setattr(department, name, value)
        session.add(department)
        session.commit()
    print(f"department {code} saved")
