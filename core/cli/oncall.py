"""``suifang oncall``: import rosters, and see who is paged for a department's emergency."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from sqlmodel import Session

from suifang.core.cli.context import cli_runtime, local_time, zone_name
from suifang.core.cli.output import emit_json
from suifang.core.db import utcnow
from suifang.core.errors import ValidationFailed
from suifang.core.timestamps import plausible_instant
from suifang.core.yaml_input import line_of, read_yaml
from suifang.tickets.oncall import RosterFile, import_roster, roster_view, staff_channels

app = typer.Typer(help="On-call rosters: who is paged for an emergency, and how it escalates.")


@app.command("import")
def import_(path: Annotated[Path, typer.Argument(help="A roster YAML file.")]) -> None:
    """Import a roster: staff and their contacts, each department's paging policy and shifts.

    Each department in the file has its shifts replaced; nothing changes if anything is wrong.
    """
    import yaml

    try:
        root, data = read_yaml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationFailed(f"{path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ValidationFailed(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    try:
        roster = RosterFile.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{path}:{line_of(root, tuple(error['loc'])) or 1}: "
            f"{'.'.join(str(p) for p in error['loc']) or '(top level)'}: "
            f"{error['msg'].removeprefix('Value error, ')}"
            for error in exc.errors()
        ]
        raise ValidationFailed("invalid roster\n  " + "\n  ".join(problems)) from None
    runtime = cli_runtime()
    with Session(runtime.engine) as session:
        counts = import_roster(
            session, roster, known_channels=staff_channels(runtime.channels.classes)
        )
    print(
        f"roster imported: {counts['staff']} staff, {counts['shifts']} shift lines, "
        f"{counts['departments']} departments"
    )


@app.command("show")
def show(
    department: str,
    at: Annotated[
        dt.datetime | None, typer.Option(help="When (default now), e.g. 2026-12-04T17:00+08:00.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Who is paged for DEPARTMENT's emergencies, in order, and the escalation delays."""
    if at is not None:
        try:
            plausible_instant(at)
        except ValueError as exc:
            raise ValidationFailed(f"--at: {exc}") from None
    runtime = cli_runtime()
    with Session(runtime.engine) as session:
        view = roster_view(session, department, at or utcnow())
    if as_json:
        emit_json(view)
        return
    print(f"{department} on call at {local_time(view['at'])} {zone_name()}:")
    if not view["chain"]:
        print("  nobody — an emergency here could page no one (import a roster)")
    for number, member in enumerate(view["chain"], start=1):
        where = f"{member['department']} {member['role']}"
        print(f"  {number}. {member['name']} ({member['username']}) — {where}")
    delays = ", ".join(f"{m:g} min" for m in view["escalate_after_minutes"])
    channels = ", ".join(view["channels"])
    print(f"  channels: {channels}; escalate after {delays} without acknowledgement")
