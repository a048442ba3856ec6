"""``suifang contacts``: a patient's contact points — list, prefer, retire (audited)."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlmodel import Session

from suifang.core import contacts
from suifang.core.cli.context import cli_actor, cli_audit, cli_runtime
from suifang.core.cli.output import emit_json, print_table
from suifang.core.contacts import known_systems
from suifang.core.errors import NotFoundError
from suifang.core.models import Patient

app = typer.Typer(
    help="A patient's contacts: the newest is in use; prefer an older one or retire one.",
    no_args_is_help=True,
)

PatientId = Annotated[int, typer.Argument(help="The patient's id (suifang journeys show).", min=1)]
ContactId = Annotated[int, typer.Argument(help="The contact's id (suifang contacts list).", min=1)]


def _patient(session: Session, patient_id: int) -> None:
    if session.get(Patient, patient_id) is None:
        raise NotFoundError(f"no patient {patient_id}")


def _state(view: dict) -> str:
    if view["in_use"]:
        return "in use"
    if view["retired_at"]:
        return f"retired {view['retired_at']:%Y-%m-%d} by {view['retired_by']}"
    if view["failed_at"]:
        return f"FAILED {view['failed_at']:%Y-%m-%d} ({view['failed_reason']}); prefer it to retry"
    return "older"


def _print(views: list[dict]) -> None:
    print_table(
        ["id", "system", "contact", "state"],
        [[view["id"], view["system"], view["value"], _state(view)] for view in views],
    )


@app.command("list")
def list_(
    patient_id: PatientId,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """PATIENT_ID's contacts (masked), the ones in use marked."""
    with Session(cli_runtime().engine) as session:
        _patient(session, patient_id)
        views = contacts.contact_views(session, patient_id)
    cli_audit("contacts list", "patients", [patient_id], str(patient_id))
    if as_json:
        emit_json(views)
        return
    print(f"patient {patient_id}: {len(views)} contact(s)")
    _print(views)


@app.command("add")
def add(
    patient_id: PatientId,
    system: Annotated[str, typer.Argument(help="phone, email, wechat, app, or a channel's own.")],
    value: Annotated[str, typer.Argument(help="The address.")],
) -> None:
    """Give PATIENT_ID a contact in SYSTEM and use it from now on."""
    runtime = cli_runtime()
    known = known_systems(runtime.plugins.channel_classes().values())
    with Session(runtime.engine) as session:
        contact = contacts.add_contact(session, patient_id, system, value, known=known)
    cli_audit("contacts add", "patients", [patient_id], str(contact.id))
    print(f"contact {contact.id} ({contact.system}) is now in use for patient {patient_id}")


@app.command("prefer")
def prefer(patient_id: PatientId, contact_id: ContactId) -> None:
    """Use CONTACT_ID for its system from now on (also brings back a retired one)."""
    with Session(cli_runtime().engine) as session:
        contact = contacts.prefer_contact(session, patient_id, contact_id)
    cli_audit("contacts prefer", "patients", [patient_id], str(contact_id))
    print(f"contact {contact_id} ({contact.system}) is now in use for patient {patient_id}")


@app.command("retire")
def retire(patient_id: PatientId, contact_id: ContactId) -> None:
    """Stop using CONTACT_ID for sending and for matching replies; kept as history."""
    with Session(cli_runtime().engine) as session:
        contact = contacts.retire_contact(session, patient_id, contact_id, actor=cli_actor())
    cli_audit("contacts retire", "patients", [patient_id], str(contact_id))
    print(f"contact {contact_id} ({contact.system}) of patient {patient_id} retired")
