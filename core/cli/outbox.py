"""``suifang outbox``: read (or follow) the messages the outbox channel delivered."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from sqlmodel import Session

from suifang.core.api.outbox import OutboxMessage, outbox_messages
from suifang.core.cli.context import cli_audit, cli_runtime, local_time, zone_name
from suifang.core.cli.output import emit_json


def _print(message: OutboxMessage) -> None:
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
    print()


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
        _print(message)
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
                    _print(message)
                    last = message.id
    except KeyboardInterrupt:
        pass
