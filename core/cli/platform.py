"""Running the platform: ``config``, ``db``, ``plugins``, ``worker``, ``api``, ``up`` and
``status``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from suifang.core.api import create_app
from suifang.core.api.channels import channel_statuses
from suifang.core.backup import backup, keys_guidance, restore
from suifang.core.channel_directory import ChannelDirectory
from suifang.core.cli.context import cli_runtime, cli_settings
from suifang.core.cli.output import emit_json, print_kv, print_table
from suifang.core.cli.status import status
from suifang.core.cli.supervisor import supervise_server, supervise_worker
from suifang.core.config import Settings
from suifang.core.db import current_revision
from suifang.core.embedded import DevServer, ensure_ports_free, free_port
from suifang.core.errors import StartupError
from suifang.core.plugins import Plugins
from suifang.core.runtime import Runtime
from suifang.core.seed import prepare_database
from suifang.core.telemetry import setup_tracing
from suifang.workflows.mllp import serve_mllp
from suifang.workflows.worker import build_worker, run_worker

__all__ = ["db_app", "register"]

db_app = typer.Typer(help="The app database: migrations and status.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("config")(show_config)
    app.command("plugins")(list_plugins)
    app.command("channels")(list_channels)
    app.command("worker")(run_worker_command)
    app.command("api")(run_api_command)
    app.command("up")(up)
    app.command("status")(status)
    app.command("backup")(backup_command)
    app.command("restore")(restore_command)
    app.add_typer(db_app, name="db")


def show_config(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Print the effective settings (secrets masked), each channel's included."""
    settings = cli_settings()
    shown = settings.masked()
    # The plugins alone, not a runtime: the settings must show even when the database or the
    # keys they name are wrong.
    for channel_class in (
        Plugins.load(disabled=settings.disabled_plugins).channel_classes().values()
    ):
        shown.update(channel_class.settings_view())
    if as_json:
        emit_json(shown)
    else:
        print_kv(shown.items())


def list_plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List loaded plugins: name, distribution, version and the hooks each implements."""
    infos = cli_runtime().plugins.describe()
    if as_json:
        emit_json([info.__dict__ for info in infos])
        return
    print_table(
        ["NAME", "DISTRIBUTION", "VERSION", "HOOKS", "CHANNELS"],
        [
            (i.name, i.distribution, i.version, ", ".join(i.hooks), ", ".join(i.channels))
            for i in infos
        ],
    )


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply the migrations up to REVISION (default: the newest)."""
    runtime = cli_runtime()
    prepare_database(runtime.engine, revision)
    print(f"database at revision {current_revision(runtime.engine)}")


@db_app.command("current")
def db_current() -> None:
    """Print the database's migration revision."""
    print(current_revision(cli_runtime().engine) or "(empty database)")


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Third-party chatter at INFO is noise on a newcomer's terminal.
    quiet = max(logging.WARNING, logging.getLevelName(settings.log_level))
    for name in ("temporalio", "alembic", "httpx"):
        logging.getLogger(name).setLevel(quiet)


def run_worker_command() -> None:
    """Run a worker against SUIFANG_TEMPORAL_ADDRESS until interrupted."""
    runtime = cli_runtime()
    _configure_logging(runtime.settings)
    setup_tracing(runtime.settings)
    prepare_database(runtime.engine)
    runtime.worker_metrics_address = runtime.settings.worker_metrics_address or None
    asyncio.run(_until_signalled(run_worker(runtime)))


def run_api_command(
    host: Annotated[str | None, typer.Option(help="Default: SUIFANG_API_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Default: SUIFANG_API_PORT.")] = None,
) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs)."""
    runtime = cli_runtime()
    _configure_logging(runtime.settings)
    prepare_database(runtime.engine)
    host = host or runtime.settings.api_host
    port = port or runtime.settings.api_port
    ensure_ports_free({"SUIFANG_API_PORT": (host, port)})
    uvicorn.run(create_app(runtime), host=host, port=port, log_level="warning")


async def _until_signalled(main: object) -> None:
    """Run coroutine ``main`` until it ends or SIGINT/SIGTERM arrives (then cancel it)."""
    task = asyncio.ensure_future(main)  # type: ignore[arg-type]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if not task.done():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: ``suifang up`` decides the shutdown order."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


async def _serve_platform(runtime: Runtime, server: DevServer) -> None:
    settings = runtime.settings
    await server.wait_healthy()
    client = await runtime.client()
    first_worker = build_worker(client, runtime)  # a plugin or setting problem shows now, once
    api = _QuietServer(
        uvicorn.Config(
            create_app(runtime),
            host=settings.api_host,
            port=settings.api_port,
            log_level="warning",
            lifespan="on",
        )
    )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)

    api_task = asyncio.ensure_future(api.serve())
    while not api.started and not api_task.done():
        await asyncio.sleep(0.05)
    if api_task.done():
        raise StartupError(f"the API could not start on {settings.api_host}:{settings.api_port}")
    try:
        hl7_listener = await serve_mllp(runtime)
    except OSError as exc:
        api.should_exit = True
        raise StartupError(
            f"the HL7 listener could not start on {settings.hl7_mllp_host}:"
            f"{settings.hl7_mllp_port}: {exc.strerror or exc}"
        ) from None
    worker_task = asyncio.ensure_future(
        supervise_worker(first_worker, lambda: build_worker(client, runtime), stopping)
    )
    server_task = asyncio.ensure_future(supervise_server(server, stopping))
    _print_banner(settings, server)
    stopper = asyncio.ensure_future(stopping.wait())
    await asyncio.wait(
        {api_task, worker_task, server_task, stopper}, return_when=asyncio.FIRST_COMPLETED
    )
    stopping.set()
    print("\nsuifang: stopping…", flush=True)
    hl7_listener.close()
    api.should_exit = True
    for task, seconds in ((worker_task, 25), (api_task, 10), (server_task, 5)):
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=seconds)
    for task in (worker_task, api_task, server_task):
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise StartupError(f"stopped because of an error: {task.exception()}")


def _print_banner(settings: Settings, server: DevServer) -> None:
    api = f"http://{settings.api_host}:{settings.api_port}"
    print("suifang is up — Ctrl-C stops everything.", flush=True)
    print_kv(
        [
            ("API", api),
            ("OpenAPI docs", f"{api}/docs"),
            ("Metrics", f"{api}/metrics" if settings.metrics_access != "off" else "off"),
            ("HL7 v2 (MLLP)", f"{settings.hl7_mllp_host}:{settings.hl7_mllp_port}"),
            ("Temporal", f"{settings.temporal_address} (namespace {settings.temporal_namespace})"),
            ("Temporal Web UI", server.ui_url),
            ("Data directory", str(Path(settings.data_dir).resolve())),
            ("Outbox", "suifang outbox"),
        ]
    )
    print(flush=True)


def backup_command(
    out: Annotated[Path, typer.Argument(help="A new .tar.gz file.", show_default=False)],
) -> None:
    """Back up the app database and the Temporal store, online (keys not included)."""
    settings = cli_settings()
    summary = backup(settings, out)
    for name, size in summary.files.items():
        print(f"{name}: {size:,} bytes")
    if not summary.app_database_included:
        print(
            "the app database is PostgreSQL: back it up with pg_dump or your PostgreSQL "
            "backups; this file holds the Temporal store only"
        )
    print(f"backup written: {summary.path} (migration {summary.migration or '-'})")
    print(keys_guidance(settings), file=sys.stderr)


def restore_command(
    source: Annotated[Path, typer.Argument(help="A backup from suifang backup.")],
    force: Annotated[
        bool, typer.Option("--force", help="Move the data here aside first (nothing deleted).")
    ] = False,
) -> None:
    """Put a backup back into the data directory (the platform must be stopped)."""
    summary = restore(cli_settings(), source, force=force)
    if summary.moved_aside is not None:
        print(f"the data that was here is in {summary.moved_aside}")
    for name, path in summary.restored.items():
        print(f"{name} → {path}")
    print(
        f"restored the backup of {summary.created_at} (migration {summary.migration or '-'}); "
        "start with suifang up: journeys continue from where the backup was taken"
    )


def up() -> None:
    """Run everything on the embedded default: Temporal dev server, a worker and the API."""
    runtime = cli_runtime()
    settings = runtime.settings
    _configure_logging(settings)
    setup_tracing(settings)
    ensure_ports_free(
        {
            "SUIFANG_API_PORT": (settings.api_host, settings.api_port),
            "SUIFANG_HL7_MLLP_PORT": (settings.hl7_mllp_host, settings.hl7_mllp_port),
        }
    )
    server = DevServer(settings)
    server.command()  # a missing binary is reported before anything else happens
    prepare_database(runtime.engine)
    # The worker's SDK metrics, which the API's /metrics (same process) appends.
    runtime.worker_metrics_address = settings.worker_metrics_address or f"127.0.0.1:{free_port()}"
    server.start()
    try:
        asyncio.run(_serve_platform(runtime, server))
    finally:
        server.stop()
        runtime.close()
    print("suifang: stopped.", flush=True)


def list_channels(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Each installed channel: available or why not, its contact system, its settings
    (secrets masked)."""
    statuses = channel_statuses(ChannelDirectory(cli_runtime().plugins))
    if as_json:
        emit_json(statuses)
        return
    for channel in statuses:
        state = "available" if channel.available else f"UNAVAILABLE: {channel.problem}"
        print(f"{channel.name} ({channel.contact_system or 'no address'}) — {state}")
        print_kv([(f"  {name}", value) for name, value in channel.settings.items()])
