"""``suifang hl7``: the MLLP listener, a test sender, the stored messages; and the HIS
department codes (``suifang departments map``)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Annotated

import typer
from hl7.mllp import open_hl7_connection

from suifang.core.cli.context import cli_audit, cli_run, cli_runtime, cli_settings, local_time
from suifang.core.cli.output import emit_json, print_table
from suifang.core.errors import StartupError, ValidationFailed
from suifang.core.models import HL7_STATUSES
from suifang.core.runtime import Runtime
from suifang.workflows.hl7_intake import (
    department_map,
    list_messages,
    map_department,
    reprocess,
    unmap_department,
)
from suifang.workflows.mllp import serve_mllp

app = typer.Typer(
    help="HL7 v2 intake: the MLLP listener, a test sender, stored messages.",
    no_args_is_help=True,
)


@app.command("listen")
def listen(
    host: Annotated[str | None, typer.Option(help="Default: SUIFANG_HL7_MLLP_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Default: SUIFANG_HL7_MLLP_PORT.")] = None,
) -> None:
    """Run the MLLP listener alone (``suifang up`` runs it too); Ctrl-C stops it.

    Journeys start on a worker: run ``suifang worker`` (or ``suifang up``) beside it."""
    runtime = cli_runtime()
    host = host or runtime.settings.hl7_mllp_host
    port = port or runtime.settings.hl7_mllp_port
    cli_run(_listen(runtime, host, port))


async def _listen(runtime: Runtime, host: str, port: int) -> None:
    try:
        server = await serve_mllp(runtime, host, port)
    except OSError as exc:
        raise StartupError(
            f"the HL7 listener cannot bind {host}:{port}: {exc.strerror or exc} "
            "(set SUIFANG_HL7_MLLP_PORT or --port)"
        ) from None
    print(f"HL7 v2 MLLP listener on {host}:{port} — Ctrl-C stops it.", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    print("HL7 listener stopped.", flush=True)


@app.command("send")
def send(
    file: Annotated[Path, typer.Argument(help="An ER7 message (segments on lines or CR).")],
    host: Annotated[str | None, typer.Option(help="Default: SUIFANG_HL7_MLLP_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Default: SUIFANG_HL7_MLLP_PORT.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the ACK.")] = 30.0,
) -> None:
    """Send FILE over MLLP, as an integration engine would, and print the ACK.

    Exits 0 on AA, 1 on AE or AR. The bytes are sent as they are in the file (its charset
    must be the one its MSH-18 declares); line ends become the CR that HL7 wants."""
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ValidationFailed(f"{file}: {exc.strerror or exc}") from None
    message = b"\r".join(
        line for line in raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n") if line
    )
    if not message.startswith(b"MSH"):
        raise ValidationFailed(f"{file}: an HL7 v2 message begins with MSH")
    settings = cli_settings()
    ack = asyncio.run(
        _send(
            message,
            host or settings.hl7_mllp_host,
            port or settings.hl7_mllp_port,
            timeout,
        )
    )
    text = ack.decode("utf-8", errors="replace")
    print(text.replace("\r", "\n").rstrip("\n"))
    raise typer.Exit(0 if _segment_field(text, "MSA", 1) == "AA" else 1)


def _segment_field(ack: str, segment: str, field: int) -> str:
    """Field ``field`` of the first ``segment`` of an ACK ('' when absent)."""
    for line in ack.split("\r"):
        if line.startswith(segment) and len(line) > 3:
            fields = line.split(line[3])
            return fields[field] if len(fields) > field else ""
    return ""


async def _send(message: bytes, host: str, port: int, timeout: float) -> bytes:
    try:
        reader, writer = await asyncio.wait_for(open_hl7_connection(host, port), timeout)
    except (OSError, TimeoutError) as exc:
        raise StartupError(f"cannot reach an HL7 listener at {host}:{port}: {exc}") from None
    try:
        writer.writeblock(message)
        await writer.drain()
        try:
            return await asyncio.wait_for(reader.readblock(), timeout)
        except TimeoutError:
            raise StartupError(f"no ACK from {host}:{port} within {timeout:g} s") from None
        except asyncio.IncompleteReadError:
            raise StartupError(f"{host}:{port} closed the connection without an ACK") from None
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


@app.command("messages")
def messages(
    status: Annotated[str | None, typer.Option(help=f"One of: {', '.join(HL7_STATUSES)}.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Stored HL7 messages, newest first: what arrived, what was done, the ACK it got."""
    if status is not None and status not in HL7_STATUSES:
        raise ValidationFailed(f"--status: {status!r} is not one of {', '.join(HL7_STATUSES)}")
    runtime = cli_runtime()
    rows = list_messages(runtime, status=status, limit=limit)
    cli_audit("hl7 messages", "hl7", [r.patient_id for r in rows if r.patient_id])
    if as_json:
        emit_json(
            [
                {
                    "id": r.id,
                    "received_at": r.received_at,
                    "sender": r.sender,
                    "control_id": r.control_id,
                    "type": r.message_type,
                    "encoding": r.encoding,
                    "transport": r.transport,
                    "status": r.status,
                    "ack_code": r.ack_code,
                    "error": r.error,
                    "patient_id": r.patient_id,
                    "enrollment_id": r.enrollment_id,
                    "attempts": r.attempts,
                }
                for r in rows
            ]
        )
        return
    print_table(
        ["ID", "RECEIVED", "SENDER", "CONTROL ID", "TYPE", "STATUS", "ACK", "PATIENT", "ERROR"],
        [
            (
                r.id,
                local_time(r.received_at),
                r.sender,
                r.control_id[:20],
                r.message_type,
                r.status + (f" ×{r.attempts}" if r.attempts > 1 else ""),
                r.ack_code or "",
                r.patient_id or "",
                (r.error or "")[:80],
            )
            for r in rows
        ],
    )


@app.command("reprocess")
def reprocess_command(
    message_ids: Annotated[list[int], typer.Argument(help="Stored message ids.")],
) -> None:
    """Act on stored messages again, e.g. after mapping a department code; prints each ACK code."""
    runtime = cli_runtime()
    failed = False
    for message_id in message_ids:
        receipt = cli_run(reprocess(runtime, message_id))
        cli_audit("hl7 reprocess", "hl7", [], str(message_id), {"ack": receipt.code})
        reason = _segment_field(receipt.ack, "ERR", 8)
        print(f"message {message_id}: {receipt.code}" + (f" — {reason}" if reason else ""))
        failed |= receipt.code != "AA"
    if failed:
        raise typer.Exit(1)


def departments_map(
    his_code: Annotated[str, typer.Argument(help="The HIS department code (PV1-10).")],
    department: Annotated[str, typer.Argument(help="The suifang department it means.")],
) -> None:
    """Map a HIS department code to a suifang department (HL7 intake reads it)."""
    before, now = map_department(cli_runtime(), his_code, department)
    cli_audit("departments map", "departments", [], his_code, {"from": before, "to": now})
    print(f"{his_code} → {now}" + (f" (was {before})" if before and before != now else ""))


def departments_unmap(
    his_code: Annotated[str, typer.Argument(help="The HIS department code.")],
) -> None:
    """Remove a HIS department code's mapping."""
    department = unmap_department(cli_runtime(), his_code)
    cli_audit("departments unmap", "departments", [], his_code, {"from": department})
    print(f"{his_code}: mapping to {department} removed")


def departments_mappings(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """HIS department codes and the suifang departments they map to."""
    table = department_map(cli_runtime())
    if as_json:
        emit_json(table)
        return
    print_table(["HIS CODE", "DEPARTMENT"], sorted(table.items()))
