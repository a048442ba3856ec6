"""``suifang users``, ``tokens``, ``audit``, ``keys``, ``temporal history``: security operations."""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Annotated, Any

import typer
from google.protobuf import json_format
from sqlmodel import Session, col, select
from temporalio.api.common.v1 import Payloads

from suifang.core.cli.context import cli_run, cli_runtime, local_time, zone_name
from suifang.core.cli.output import emit_json, print_table
from suifang.core.errors import NotFoundError, ValidationFailed
from suifang.core.models import ApiToken, StaffUser
from suifang.core.security.audit import query_audit
from suifang.core.security.auth import Role, Scope, create_user, issue_token, revoke_token
from suifang.core.security.crypto import generate_key
from suifang.core.security.keys import reindex_blind_indexes, rotate_encrypted_columns
from suifang.core.security.lifetimes import token_lifetime

users_app = typer.Typer(help="Staff and integrator accounts.", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens (only their hashes are stored).", no_args_is_help=True)
keys_app = typer.Typer(help="Encryption keys: generate, rotate, re-index.", no_args_is_help=True)
temporal_app = typer.Typer(
    help="Temporal: decrypted workflow histories for operators.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")
    app.add_typer(tokens_app, name="tokens")
    app.add_typer(keys_app, name="keys")
    app.add_typer(temporal_app, name="temporal")
    app.command("audit")(audit)


@users_app.command("add")
def add_user(
    username: str,
    role: Annotated[Role, typer.Option(help="admin, agent, nurse, doctor, integrator, auditor")],
    name: Annotated[str | None, typer.Option(help="Display name (default: the username).")] = None,
    department: Annotated[
        list[str] | None, typer.Option(help="A department (repeat for more).")
    ] = None,
) -> None:
    """Create an account."""
    with Session(cli_runtime().engine) as session:
        user = create_user(
            session,
            username=username,
            display_name=name or username,
            role=role,
            departments=department or [],
        )
    print(f"user {user.username} (id {user.id}, {user.role}) created")


@users_app.command("list")
def list_users(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every account."""
    with Session(cli_runtime().engine) as session:
        users = session.exec(select(StaffUser).order_by(col(StaffUser.id))).all()
    if as_json:
        emit_json([u.model_dump(mode="json") for u in users])
        return
    print_table(
        ["ID", "USERNAME", "NAME", "ROLE", "DEPARTMENTS", "ACTIVE"],
        [
            (
                u.id,
                u.username,
                u.display_name,
                u.role,
                ",".join(u.departments),
                "yes" if u.active else "no",
            )
            for u in users
        ],
    )


@users_app.command("deactivate")
def deactivate(username: str) -> None:
    """Disable an account: its tokens stop working at once."""
    with Session(cli_runtime().engine) as session:
        user = session.exec(select(StaffUser).where(StaffUser.username == username)).first()
        if user is None:
            raise NotFoundError(f"no user {username!r}")
        user.active = False
        session.add(user)
        session.commit()
    print(f"user {username} deactivated")


@tokens_app.command("create")
def create_token(
    username: str,
    name: Annotated[str, typer.Option(help="What the token is for, e.g. his-integration.")] = "cli",
    expires_in_days: Annotated[
        float,
        typer.Option(
            help="Lifetime in days, from 1 minute (0.000695) to SUIFANG_TOKEN_MAX_LIFETIME_DAYS."
        ),
    ] = 90,
    department: Annotated[
        list[str] | None,
        typer.Option(help="Integrator tokens: a department it acts for (repeat for more)."),
    ] = None,
    scope: Annotated[
        list[Scope] | None,
        typer.Option(help="Integrator tokens: what its feed does (repeat for more)."),
    ] = None,
    unscoped: Annotated[
        bool,
        typer.Option(
            "--unscoped", help="Integrator tokens: every department and route, on purpose."
        ),
    ] = False,
) -> None:
    """Issue a token for USERNAME and print it — once: only its hash is kept.

    An integrator token is limited to --department(s) and --scope(s); a hospital-wide one
    needs --unscoped, and is shown as such by ``suifang tokens list``.
    """
    runtime = cli_runtime()
    try:
        expires = token_lifetime(expires_in_days, max_days=runtime.settings.token_max_lifetime_days)
    except ValueError as exc:
        raise ValidationFailed(f"--expires-in-days: {exc}") from None
    with Session(runtime.engine) as session:
        user = session.exec(select(StaffUser).where(StaffUser.username == username)).first()
        if user is None:
            raise NotFoundError(f"no user {username!r}")
        if not user.active:
            raise ValidationFailed(f"user {username!r} is deactivated")
        token, record = issue_token(
            session,
            user,
            name=name,
            expires_in=expires,
            departments=department,
            scopes=list(scope or []),
            unscoped=unscoped,
        )
    # The token alone on stdout, so that TOKEN=$(suifang tokens create …) captures just it.
    print(token, flush=True)
    until = record.expires_at.strftime("%Y-%m-%d") if record.expires_at else "never"
    print(
        f"token {record.id} for {username} — {_reach(record)}, expires {until}; "
        "store it now, it is not shown again",
        file=sys.stderr,
        flush=True,
    )


def _reach(token: ApiToken) -> str:
    """What a token may reach, beyond its account's role: for the token listings."""
    if token.unscoped:
        return "UNSCOPED (hospital-wide)"
    if token.scopes or token.departments:
        return f"{','.join(token.scopes)} in {','.join(token.departments)}"
    return "its account's role and departments"


@tokens_app.command("list")
def list_tokens(username: Annotated[str | None, typer.Option()] = None) -> None:
    """Tokens and their state (never the tokens themselves)."""
    with Session(cli_runtime().engine) as session:
        query = select(ApiToken, StaffUser).join(StaffUser, col(StaffUser.id) == ApiToken.user_id)
        if username:
            query = query.where(StaffUser.username == username)
        rows = session.exec(query.order_by(col(ApiToken.id))).all()
    print_table(
        ["ID", "USER", "NAME", "PREFIX", "REACH", "EXPIRES", "REVOKED", "LAST USED"],
        [
            (
                t.id,
                u.username,
                t.name,
                t.prefix,
                _reach(t),
                t.expires_at or "never",
                t.revoked_at or "",
                t.last_used_at or "",
            )
            for t, u in rows
        ],
    )


@tokens_app.command("revoke")
def revoke(token_id: int) -> None:
    """Revoke a token: it stops working at once."""
    with Session(cli_runtime().engine) as session:
        revoke_token(session, token_id)
    print(f"token {token_id} revoked")


def audit(
    actor: Annotated[str | None, typer.Option(help="Only this account.")] = None,
    patient: Annotated[int | None, typer.Option(help="Only this patient id.")] = None,
    resource: Annotated[str | None, typer.Option(help="journeys, tickets, patients…")] = None,
    outcome: Annotated[
        str | None, typer.Option(help="ok, denied, not_found, invalid, error")
    ] = None,
    since: Annotated[str | None, typer.Option(help="ISO date or time.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Query the audit log: who read or changed which patient's data, when, with what outcome."""
    start = None
    if since:
        try:
            start = dt.datetime.fromisoformat(since)
        except ValueError:
            raise ValidationFailed(f"--since: {since!r} is not an ISO date") from None
        if start.tzinfo is None:
            start = start.replace(tzinfo=dt.UTC)
    with Session(cli_runtime().engine) as session:
        rows = query_audit(
            session,
            actor=actor,
            patient_id=patient,
            resource=resource,
            outcome=outcome,
            since=start,
            limit=limit,
        )
    if as_json:
        emit_json([r.model_dump(mode="json") for r in rows])
        return
    print_table(
        [f"AT ({zone_name()})", "ACTOR", "ROLE", "ACTION", "PATIENT", "OUTCOME", "REQUEST"],
        [
            (
                local_time(r.at, "%Y-%m-%d %H:%M:%S"),
                r.actor,
                r.role,
                r.action,
                r.patient_id or "",
                r.outcome,
                r.request_id[:12],
            )
            for r in rows
        ],
    )


@keys_app.command("generate")
def generate() -> None:
    """Print a new encryption key (add it first in SUIFANG_ENCRYPTION_KEYS, then rotate)."""
    print(generate_key())


@keys_app.command("rotate")
def rotate() -> None:
    """Re-encrypt every stored sensitive value with the first key of SUIFANG_ENCRYPTION_KEYS."""
    counts = rotate_encrypted_columns(cli_runtime().engine)
    for table, count in counts.items():
        print(f"{table}: {count} row(s) re-encrypted")
    print("done: keys after the first can be removed from SUIFANG_ENCRYPTION_KEYS")


@keys_app.command("reindex")
def reindex() -> None:
    """Recompute every keyed hash (contacts, ID numbers, MRNs, visit numbers) after
    SUIFANG_BLIND_INDEX_KEY changed: until then, intake and replies cannot find anyone."""
    for name, count in reindex_blind_indexes(cli_runtime().engine).items():
        print(f"{name}: {count} row(s) re-indexed")


@temporal_app.command("history")
def history(workflow_id: str) -> None:
    """Print a workflow's history with its payloads decrypted (needs this process's keys)."""
    runtime = cli_runtime()

    async def fetch() -> list[dict[str, object]]:
        client = await runtime.client()
        events = []
        async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
            data = json.loads(json_format.MessageToJson(event))
            for field in _payload_fields(event):
                decoded = await runtime.codec.decode(list(field.payloads))
                data.setdefault("decoded", []).extend(
                    json.loads(p.data.decode("utf-8", errors="replace") or "null") for p in decoded
                )
            events.append(data)
        return events

    emit_json(cli_run(fetch()))


def _repeated(descriptor: Any) -> bool:
    """protobuf 7 removed ``FieldDescriptor.label`` for ``is_repeated``; 5 and 6 have label."""
    repeated = getattr(descriptor, "is_repeated", None)
    if repeated is not None:
        return bool(repeated)
    return bool(descriptor.label == descriptor.LABEL_REPEATED)


def _payload_fields(event: object) -> list[object]:
    """Every ``Payloads`` message anywhere in a history event."""
    found: list[object] = []

    def walk(message: object) -> None:
        if isinstance(message, Payloads):
            found.append(message)
            return
        for descriptor, value in message.ListFields():  # type: ignore[attr-defined]
            if descriptor.message_type is None:
                continue
            if _repeated(descriptor):
                if hasattr(value, "values"):
                    for item in value.values():
                        if hasattr(item, "ListFields"):
                            walk(item)
                else:
                    for item in value:
                        walk(item)
            else:
                walk(value)

    walk(event)
    return found
