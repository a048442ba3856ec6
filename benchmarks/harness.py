"""What every benchmark starts: the embedded default in a throw-away data directory.

:class:`Platform` brings up what ``suifang up`` runs — the Temporal dev server
(:class:`~suifang.core.embedded.DevServer`, a SQLite file in the data directory) and a
migrated, seeded SQLite app database — plus, on request, the real worker in a separate
process (:func:`Platform.start_worker_process`) and the real API under uvicorn
(:func:`Platform.start_api_process`). Everything is stopped and deleted at the end unless
``--keep`` is given.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import cProfile
import io
import os
import platform
import pstats
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import bench_plugin
import psutil
from sqlmodel import Session

from suifang.core.config import Settings, load_settings
from suifang.core.embedded import DevServer
from suifang.core.errors import StartupError
from suifang.core.plugins import Plugins
from suifang.core.runtime import Runtime
from suifang.core.security.auth import Role, create_user, issue_token
from suifang.core.seed import prepare_database

BENCH_DIR = Path(__file__).resolve().parent
RUN_SCRIPT = BENCH_DIR / "run.py"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` in 0..1); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary_line(name: str, fields: dict[str, Any]) -> str:
    """``BENCH <name> key=value …``: one line, no spaces inside values, easy to parse."""
    parts = []
    for key, value in fields.items():
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        parts.append(f"{key}={text.replace(' ', '_')}")
    return f"BENCH {name} " + " ".join(parts)


def rss_bytes(pid: int | None = None) -> int:
    return int(psutil.Process(pid or os.getpid()).memory_info().rss)


def file_bytes(*paths: Path) -> int:
    return sum(path.stat().st_size for path in paths if path.exists())


def machine() -> dict[str, str]:
    """The facts docs/benchmarks.md reports about the machine a run used."""
    import temporalio

    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "ram_gb": f"{psutil.virtual_memory().total / 2**30:.1f}",
        "python": platform.python_version(),
        "temporalio": temporalio.__version__,
        "load1": f"{os.getloadavg()[0]:.2f}",
    }


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def bench_plugins() -> Plugins:
    """The built-in plugins plus the benchmarks' pathway and channel."""
    return Plugins.load(entrypoints=False, extra=[("bench", bench_plugin)])


class Platform:
    """The embedded default in a temporary data directory (async context manager)."""

    def __init__(self, *, keep: bool = False, task_queue: str = "suifang") -> None:
        self.keep = keep
        self.root = Path(tempfile.mkdtemp(prefix="suifang-bench-"))
        self.task_queue = task_queue
        self.settings: Settings = self._settings()
        self.server = DevServer(self.settings)
        self.runtime: Runtime | None = None
        self.processes: list[subprocess.Popen[str]] = []

    def _settings(self) -> Settings:
        """Fresh free ports each time: a port probed free can be taken before the server binds
        it (another test's process on this machine), and then the start is tried again."""
        return load_settings(
            data_dir=self.root / "var",
            database_url="",
            temporal_address=f"127.0.0.1:{free_port()}",
            temporal_ui_port=free_port(),
            api_port=free_port(),
            task_queue=self.task_queue,
            log_level="WARNING",
            telemetry_exporter="none",
        )

    @property
    def temporal_db(self) -> list[Path]:
        db = self.server.db_file
        return [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]

    @property
    def app_db(self) -> list[Path]:
        db = self.settings.data_dir / "suifang.db"
        return [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]

    async def __aenter__(self) -> Platform:
        log(f"data directory {self.root}; starting the Temporal dev server")
        for attempt in range(1, 4):
            self.server.start()
            try:
                await self.server.wait_healthy()
                break
            except StartupError as exc:
                self.server.stop()
                if "address already in use" not in str(exc) or attempt == 3:
                    raise
                log(f"a port was taken meanwhile ({exc}); trying other ports")
                self.settings = self._settings()
                self.server = DevServer(self.settings)
        self.runtime = Runtime.from_settings(self.settings, plugins=bench_plugins())
        prepare_database(self.runtime.engine)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        for process in reversed(self.processes):
            stop_process(process)
        if self.runtime is not None:
            self.runtime.close()
        self.server.stop()
        if self.keep:
            log(f"kept {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)

    def env(self) -> dict[str, str]:
        """The environment that points a ``suifang`` process at this platform."""
        settings = self.settings
        return {
            **os.environ,
            "SUIFANG_DATA_DIR": str(settings.data_dir),
            "SUIFANG_DATABASE_URL": settings.database_url,
            "SUIFANG_TEMPORAL_ADDRESS": settings.temporal_address,
            "SUIFANG_TASK_QUEUE": settings.task_queue,
            "SUIFANG_API_PORT": str(settings.api_port),
            "SUIFANG_LOG_LEVEL": "WARNING",
            "SUIFANG_TELEMETRY_EXPORTER": "none",
        }

    def start_worker_process(self, max_cached_workflows: int | None = None) -> WorkerProcess:
        """The real worker (workflows/worker.py) in its own process; returns once it polls."""
        argv = [sys.executable, str(RUN_SCRIPT), "_worker"]
        if max_cached_workflows is not None:
            argv += ["--max-cached", str(max_cached_workflows)]
        worker = WorkerProcess(argv, env=self.env(), cwd=self.root)
        self.processes.append(worker.process)
        worker.wait_ready()
        return worker

    def start_api_process(self) -> subprocess.Popen[str]:
        """``suifang api`` (uvicorn) in its own process; returns once it answers /healthz."""
        return self._start_http_process(
            [sys.executable, "-m", "suifang.core.cli", "api"], self.settings.api_port
        )

    def start_hl7_listener_process(self, port: int) -> subprocess.Popen[str]:
        """``suifang hl7 listen`` on ``port`` in its own process; returns once it accepts."""
        import socket

        argv = [sys.executable, "-m", "suifang.core.cli", "hl7", "listen", "--port", str(port)]
        process = self._spawn(argv)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"hl7 listen exited: {process.stderr.read() if process.stderr else ''}"
                )
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                return process
            time.sleep(0.25)
        raise RuntimeError("hl7 listen did not accept connections within 90 s")

    def start_baseline_api_process(self, port: int) -> subprocess.Popen[str]:
        """The bare FastAPI baseline (api_baseline.py) on ``port``, on this platform's
        database and Temporal server; returns once it answers /healthz."""
        return self._start_http_process(
            [sys.executable, str(RUN_SCRIPT), "_api_baseline", "--port", str(port)], port
        )

    def _spawn(self, argv: list[str]) -> subprocess.Popen[str]:
        """``argv`` in its own process on this platform, stopped when the platform is."""
        process = subprocess.Popen(
            argv,
            env=self.env(),
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.processes.append(process)
        return process

    def admin_token(self) -> str:
        """A bearer token of an admin account on this platform's database."""
        assert self.runtime is not None
        with Session(self.runtime.engine) as session:
            user = create_user(session, username="bench", display_name="Bench", role=Role.ADMIN)
            return issue_token(session, user, name="bench")[0]

    def _start_http_process(self, argv: list[str], port: int) -> subprocess.Popen[str]:
        import httpx

        process = self._spawn(argv)
        url = f"http://127.0.0.1:{port}/healthz"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{' '.join(argv[1:])} exited: "
                    f"{process.stderr.read() if process.stderr else ''}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2).status_code == 200:
                    return process
            time.sleep(0.25)
        raise RuntimeError(f"{' '.join(argv[1:])} did not become healthy within 90 s")


class WorkerProcess:
    """A ``run.py _worker`` subprocess: says ``worker ready``, and its cache size on SIGUSR1."""

    def __init__(self, argv: list[str], *, env: dict[str, str], cwd: Path) -> None:
        self.log_file = cwd / "worker.log"
        with self.log_file.open("ab") as log_output:
            self.process: subprocess.Popen[str] = subprocess.Popen(
                argv,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log_output,
                text=True,
            )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.strip())

    def _next_line(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            if line.startswith(prefix):
                return line
        tail = self.log_file.read_text(errors="replace").strip().splitlines()[-5:]
        raise RuntimeError(f"the worker process did not say {prefix!r}: {' | '.join(tail)}")

    def wait_ready(self, timeout: float = 90.0) -> None:
        self._next_line("worker ready", timeout)

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss(self) -> int:
        return rss_bytes(self.process.pid)

    def cached_workflows(self, timeout: float = 30.0) -> int:
        """How many workflows the worker holds in its cache right now."""
        self.process.send_signal(signal.SIGUSR1)
        return int(self._next_line("cached ", timeout).split()[1])


def stop_process(process: subprocess.Popen[str], timeout: float = 30.0) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def run_pool(count: int, limit: int, job: Callable[[int], Awaitable[Any]]) -> list[Any]:
    """``job(0)`` … ``job(count - 1)`` with at most ``limit`` in flight; their results in order."""
    results: list[Any] = [None] * count
    indexes = iter(range(count))

    async def runner() -> None:
        for index in indexes:
            results[index] = await job(index)

    await asyncio.gather(*(runner() for _ in range(min(limit, count))))
    return results


def describe_latencies(values: Sequence[float]) -> dict[str, float]:
    """p50/p99/max/mean in milliseconds from seconds."""
    if not values:
        return {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0, "mean_ms": 0.0}
    return {
        "p50_ms": percentile(values, 0.50) * 1000,
        "p99_ms": percentile(values, 0.99) * 1000,
        "max_ms": max(values) * 1000,
        "mean_ms": statistics.fmean(values) * 1000,
    }


class Profiles:
    """cProfile for the event-loop thread and every workflow-task thread, summed by package.

    Workflow activations run on the worker's thread pool, activities and everything else on
    the event loop; ``executor()`` is a pool whose threads profile themselves.
    """

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []
        self.lock = threading.Lock()

    def _profile_this_thread(self) -> None:
        profile = cProfile.Profile()
        profile.enable()
        with self.lock:
            self.profiles.append(profile)

    def executor(self) -> concurrent.futures.ThreadPoolExecutor:
        """Like the SDK's default workflow-task pool (500 threads), profiled."""
        return concurrent.futures.ThreadPoolExecutor(
            max_workers=500,
            thread_name_prefix="temporal_workflow_",
            initializer=self._profile_this_thread,
        )

    @contextlib.contextmanager
    def main_thread(self) -> Iterator[None]:
        profile = cProfile.Profile()
        profile.enable()
        try:
            yield
        finally:
            profile.disable()
            with self.lock:
                self.profiles.append(profile)

    def by_package(self) -> list[tuple[str, float]]:
        """(package, seconds of own CPU time), busiest first; waiting is left out."""
        totals: collections.Counter[str] = collections.Counter()
        for profile in self.profiles:
            stats = pstats.Stats(profile)
            for (filename, _line, function), row in stats.stats.items():  # type: ignore[attr-defined]
                package = _package_of(filename, function)
                if package is not None:
                    totals[package] += row[2]
        return totals.most_common()

    def cumulative(self, names: Iterable[str]) -> list[tuple[str, int, float]]:
        """(function, calls, CPU seconds inside it and what it called) for the named ones."""
        wanted = set(names)
        found: collections.Counter[str] = collections.Counter()
        calls: collections.Counter[str] = collections.Counter()
        for profile in self.profiles:
            for (_file, _line, function), row in pstats.Stats(profile).stats.items():  # type: ignore[attr-defined]
                if function in wanted:
                    found[function] += row[3]
                    calls[function] += row[1]
        return [(name, calls[name], seconds) for name, seconds in found.most_common()]

    def dump(self, path: Path) -> None:
        """Every thread's profile merged into one pstats file (``python -m pstats FILE``)."""
        stats = pstats.Stats(self.profiles[0])
        for profile in self.profiles[1:]:
            stats.add(profile)
        stats.dump_stats(path)

    def top_functions(self, count: int = 25) -> str:
        stats = pstats.Stats(self.profiles[0])
        for profile in self.profiles[1:]:
            stats.add(profile)
        buffer = io.StringIO()
        stats.stream = buffer  # type: ignore[attr-defined]
        stats.sort_stats("tottime").print_stats(count)
        return buffer.getvalue()


_IDLE = ("epoll", "poll'", "'acquire' of '_thread", "method 'get' of '_queue", "select'")


def _package_of(filename: str, function: str) -> str | None:
    """A coarse owner for a profiled function; None for time spent waiting."""
    if filename == "~":
        if any(marker in function for marker in _IDLE):
            return None
        if "sqlite3" in function:
            return "sqlite3 (C)"
        if "_rust" in function or "openssl" in function.lower() or "hmac" in function.lower():
            return "cryptography (C)"
        if (
            "pydantic_core" in function
            or "SchemaValidator" in function
            or "SchemaSerializer" in function
        ):
            return "pydantic-core (C)"
        if "temporal_sdk_bridge" in function or "temporalio.bridge" in function:
            return "temporalio bridge (Rust)"
        return "builtins"
    parts = Path(filename).parts
    if "site-packages" in parts:
        package = parts[parts.index("site-packages") + 1]
        return package.split(".")[0].split("-")[0]
    if "main" in parts and "work" in parts:
        tail = parts[parts.index("main") + 1 :]
        return f"suifang/{tail[0]}" if len(tail) > 1 else "suifang"
    if "python3.11" in parts:
        return f"stdlib/{parts[parts.index('python3.11') + 1].removesuffix('.py')}"
    return filename


def pci_discharge(run: str, number: int) -> dict[str, Any]:
    """An intake request (``POST /intake/discharges`` body) for a PCI patient discharged now."""
    import datetime as dt

    return {
        "pathway": "pci",
        "patient": {
            "external_id": f"P-{run}-{number}",
            "name": "李建国",
            "sex": "male",
            "birth_date": "1962-03-08",
            "phone": f"139{number % 100_000_000:08d}",
        },
        "encounter": {
            "external_id": f"V-{run}-{number}",
            "department": "cardiology",
            "diagnosis_codes": ["I21.4"],
            "procedure_codes": ["36.06"],
            "discharged_at": dt.datetime.now(dt.UTC).isoformat(),
            "length_of_stay_days": 4,
        },
    }


async def wait_until_parked(client: Any, workflow_ids: Sequence[str], timeout: float) -> None:
    """Until each of ``workflow_ids`` has had its first workflow task and waits on a timer,
    with no activity in flight."""
    deadline = time.monotonic() + timeout
    remaining = list(workflow_ids)
    while remaining:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(remaining)} workflows still not parked after {timeout:.0f} s")
        still = []
        for workflow_id in remaining:
            raw = (await client.get_workflow_handle(workflow_id).describe()).raw_description
            if (
                raw.HasField("pending_workflow_task")
                or raw.pending_activities
                or raw.workflow_execution_info.history_length < 5
            ):
                still.append(workflow_id)
        remaining = still
        if remaining:
            await asyncio.sleep(1.0)
