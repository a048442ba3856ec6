"""The ``suifang`` command line: one clear line on error, never a traceback for user mistakes."""

from __future__ import annotations

import functools
import os
import sys
from typing import Any

import typer
from sqlalchemy.exc import SQLAlchemyError

from suifang.core.cli import (
    contacts,
    demo,
    hl7,
    journeys,
    oncall,
    outbox,
    pathways,
    patients,
    platform,
    report,
    security,
    simulate,
    surveys,
    tickets,
    triage,
)
from suifang.core.errors import SuifangError
from suifang.core.private_files import private_umask

__all__ = ["app", "main"]

app = typer.Typer(
    name="suifang",
    help="suifang (随访): hospital patient follow-up and feedback tickets.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
platform.register(app)
app.add_typer(pathways.app, name="pathways")
app.add_typer(journeys.app, name="journeys")
app.command("outbox")(outbox.outbox)
messages_app = typer.Typer(help="Messages and their delivery attempts.", no_args_is_help=True)
messages_app.command("show")(outbox.show_message)
app.add_typer(messages_app, name="messages")
app.command("demo")(demo.demo)
security.register(app)
tickets.register(app)
app.add_typer(report.report_app, name="report")
app.add_typer(oncall.app, name="oncall")
app.add_typer(contacts.app, name="contacts")
app.add_typer(patients.app, name="patients")
app.add_typer(surveys.app, name="surveys")
app.add_typer(triage.triage_app, name="triage")
app.add_typer(triage.kb_app, name="kb")
app.command("simulate")(simulate.simulate)
app.add_typer(hl7.app, name="hl7")
tickets.departments_app.command("map")(hl7.departments_map)
tickets.departments_app.command("unmap")(hl7.departments_unmap)
tickets.departments_app.command("mappings")(hl7.departments_mappings)


@functools.cache
def _command() -> Any:
    """The click command behind ``app``, with on/off flags shown as flags in ``--help`` (typer
    would print ``--json <bool>``, as if the flag took a value)."""
    command = typer.main.get_command(app)
    todo: list[Any] = [command]
    while todo:  # typer's own click classes: duck-typed
        current = todo.pop()
        for param in current.params:
            if getattr(param, "is_flag", False):
                param.metavar = ""
        current.get_help_option = _flag_help(current.get_help_option)
        todo.extend(getattr(current, "commands", {}).values())
    return command


def _flag_help(make: Any) -> Any:
    def help_option(ctx: Any) -> Any:
        option = make(ctx)
        if option is not None:
            option.metavar = ""
        return option

    return help_option


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors become one ``suifang: error: …`` line and a non-zero exit code.

    Everything a command creates — the SQLite database and its WAL, the key file, the Temporal
    store and log of ``suifang up`` — is created owner-only (umask 077).
    """
    try:
        with private_umask():
            _command()(args=argv, prog_name="suifang")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except SuifangError as exc:
        print(f"suifang: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        print(f"suifang: error: the database refused: {reason}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _entry() -> None:
    code = main()
    if code and "temporalio.bridge.runtime" in sys.modules:
        # A Temporal connection that failed can leave a bridge thread calling into Python
        # while the interpreter finalizes, which aborts the process (temporalio/sdk-python
        # #300) and turns a one-line error into a crash dump. Nothing is left to clean up
        # after an error exit, so skip the teardown.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    _entry()
