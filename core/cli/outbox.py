"""``suifang outbox``: read (or follow) the messages the outbox channel delivered."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from sqlmodel import Session

from suifang.core.api.outbox import AttemptOut, OutboxMessage, message_detail, outbox_messages
from suifang.core.cli.context import cli_audit, cli_runtime, local_time, zone_name
from suifang.core.cli.output import emit_json, print_table
from suifang.core.errors import NotFoundError


def _print_attempts(attempts: list[AttemptOut]) -> None:
    if not attempts:
        print("  (no attempt yet)")
        return
    print_table(
        ["#", f"AT ({zone_name()})", "CHANNEL", "OUTCOME", "PROVIDER ID", "ERROR"],
        [
            (
                a.attempt,
                local_time(a.at, "%m-%d %H:%M:%S"),
                a.channel,
                a.outcome,
                a.provider_message_id or "",
                a.error or "",
            )
            for a in attempts
        ],
    )


def _print(message: OutboxMessage, *, attempts: bool = False) -> None:
    when = local_time(message.sent_at or message.created_at, "%Y-%m-%d %H:%M:%S")
    where = (
        f"journey {message.enrollment_id}"
        if message.enrollment_id
        else f"ticket {message.ticket_id}"
    )
    to = f" · to {message.recipient}" if message.recipient else ""
    print(
        f"── #{message.id} {when} {zone_name()} · patient {message.patient_id} · {where} · "
        f"{message.kind}"
        f"{to} · {message.channel or '-'} · {message.status}"
    )
    print(message.body)
    if attempts:
        with Session(cli_runtime().engine) as session:
            detail = message_detail(session, message.id)
        _print_attempts(detail.attempts if detail else [])
    print()


def show_message(message_id: int, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """One message and every delivery attempt the channel cascade made."""
    with Session(cli_runtime().engine) as session:
        detail = message_detail(session, message_id)
    if detail is None:
        raise NotFoundError(f"no message {message_id}")
    cli_audit("messages show", "messages", [detail.patient_id], str(message_id))
    if as_json:
        emit_json(detail)
        return
    _print(detail)
    if detail.status_detail:
        print(f"status: {detail.status} ({detail.status_detail})")
    _print_attempts(detail.attempts)


def outbox(
    patient: Annotated[int | None, typer.Option(help="Only this patient id.")] = None,
    journey: Annotated[int | None, typer.Option(help="Only this journey id.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
    all_channels: Annotated[
        bool, typer.Option(help="Messages of every channel, not only the outbox.")
    ] = False,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new messages.")
    ] = False,
    attempts: Annotated[
        bool, typer.Option("--attempts", help="Show each message's delivery attempts.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Messages delivered to the outbox (the embedded default channel), newest last."""
    engine = cli_runtime().engine
    channel = None if all_channels else "outbox"
    with Session(engine) as session:
        messages = list(
            reversed(
                outbox_messages(
                    session, patient_id=patient, enrollment_id=journey, channel=channel, limit=limit
                )
            )
        )
    cli_audit("outbox", "outbox", [m.patient_id for m in messages])
    if as_json:
        emit_json(messages)
        return
    if not messages and not follow:
        print("(the outbox is empty)")
    for message in messages:
        _print(message, attempts=attempts)
    last = messages[-1].id if messages else 0
    try:
        while follow:
            time.sleep(1)
            with Session(engine) as session:
                for message in outbox_messages(
                    session,
                    patient_id=patient,
                    enrollment_id=journey,
                    channel=channel,
                    after_id=last,
                    limit=100,
                ):
                    _print(message, attempts=attempts)
                    last = message.id
    except KeyboardInterrupt:
        pass
