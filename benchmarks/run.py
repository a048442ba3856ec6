"""suifang's benchmarks: ``python benchmarks/run.py <benchmark> [options]``.

Each benchmark starts what it needs itself (the embedded default in a temporary data
directory: Temporal dev server, SQLite app database, the real worker; the real API under
uvicorn for ``api``), prints its progress on stderr and, last, one line on stdout::

    BENCH <name> key=value key=value …

Benchmarks: ``throughput``, ``capacity``, ``sla``, ``api``, ``memory``, ``hl7``, ``records``;
``all`` runs each
with its defaults. See docs/benchmarks.md for results and what each number means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

BENCHMARKS = ("throughput", "capacity", "sla", "api", "memory", "hl7", "records")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="benchmarks/run.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="benchmark", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--keep", action="store_true", help="Keep the temporary data directory.")
        return sub

    throughput = command("throughput", "Journeys completed per second vs bare Temporal.")
    throughput.add_argument("--journeys", type=int, default=200, help="Journeys per phase.")
    throughput.add_argument("--rounds", type=int, default=1, help="Alternating rounds.")
    throughput.add_argument("--warmup", type=int, default=5, help="Untimed journeys first.")
    throughput.add_argument("--concurrency", type=int, default=16, help="Starts in flight.")
    throughput.add_argument(
        "--profile", action="store_true", help="cProfile the suifang phases (slows them)."
    )
    throughput.add_argument("--profile-out", help="Also write the merged pstats file here.")

    capacity = command("capacity", "Open journeys parked on long timers.")
    capacity.add_argument("--journeys", type=int, default=50_000)
    capacity.add_argument("--concurrency", type=int, default=16, help="Intakes in flight.")
    capacity.add_argument("--sample", type=int, default=200, help="Journeys queried after.")

    sla = command("sla", "Lateness of SLA warning and breach timers.")
    sla.add_argument("--tickets", type=int, default=2000)
    sla.add_argument("--window", type=float, default=60.0, help="Seconds the breaches span.")
    sla.add_argument("--open-rate", type=float, default=20.0, help="Tickets opened per second.")
    sla.add_argument("--concurrency", type=int, default=16, help="Ticket opens in flight.")
    sla.add_argument(
        "--warning-lead",
        type=float,
        default=20.0,
        help="Seconds between each ticket's warning and its breach.",
    )
    sla.add_argument(
        "--histories", type=int, default=200, help="Tickets whose timers to break down."
    )
    sla.add_argument(
        "--max-cached",
        type=int,
        default=None,
        help="The worker's workflow cache (default: SUIFANG_WORKER_MAX_CACHED_WORKFLOWS).",
    )

    api = command("api", "Intake and ticket-create latency at a fixed request rate.")
    api.add_argument("--rate", type=float, default=20.0, help="Requests per second per kind.")
    api.add_argument("--seconds", type=float, default=30.0)

    hl7 = command("hl7", "ADT^A03 over MLLP vs the JSON intake, same rate, same run.")
    hl7.add_argument("--rate", type=float, default=50.0, help="Discharges per second.")
    hl7.add_argument("--seconds", type=float, default=20.0)

    memory = command("memory", "Worker memory per cached workflow.")
    memory.add_argument(
        "--count", "--journeys", type=int, default=5000, help="Workflows started and parked."
    )
    memory.add_argument("--kind", choices=("journey", "ticket"), default="journey")

    records = command("records", "Record, trend and monthly review on a large database.")
    records.add_argument("--observations", type=int, default=1_000_000)
    records.add_argument("--tickets", type=int, default=100_000)
    records.add_argument("--patients", type=int, default=20_000)
    records.add_argument("--repeat", type=int, default=3, help="Median of this many runs.")
    records.add_argument(
        "--database-url", default=None, help="PostgreSQL to fill (default: a SQLite file)."
    )

    everything = command("all", "Every benchmark with its defaults.")
    del everything

    worker = commands.add_parser("_worker", help=argparse.SUPPRESS)
    worker.add_argument("--max-cached", type=int, default=None)
    baseline_api = commands.add_parser("_api_baseline", help=argparse.SUPPRESS)
    baseline_api.add_argument("--port", type=int, required=True)
    return parser


async def _worker(args: argparse.Namespace) -> None:
    """The production worker (``suifang worker``) with an optional cache size, for a subprocess."""
    from suifang.core.config import load_settings
    from suifang.core.runtime import Runtime
    from suifang.workflows.worker import build_worker

    runtime = Runtime.from_settings(load_settings())
    client = await runtime.client()
    options: dict[str, Any] = {}
    if args.max_cached is not None:
        options["max_cached_workflows"] = args.max_cached
    worker = build_worker(client, runtime, **options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def report_cache() -> None:
        # Private SDK state, read only to report the cache size to the benchmark.
        running = getattr(worker._workflow_worker, "_running_workflows", {})
        print(f"cached {len(running)}", flush=True)

    loop.add_signal_handler(signal.SIGUSR1, report_cache)
    async with worker:
        print("worker ready", flush=True)
        await stop.wait()


def _runner(name: str) -> Callable[[argparse.Namespace], Coroutine[Any, Any, str]]:
    import importlib

    module = {
        "api": "api_latency",
        "memory": "memory_per_workflow",
        "hl7": "hl7_intake",
        "records": "records_scale",
    }.get(name, name)
    return importlib.import_module(module).main  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.benchmark == "_worker":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_worker(args))
        return 0
    if args.benchmark == "_api_baseline":
        from api_baseline import serve

        from suifang.core.config import load_settings

        settings = load_settings()
        serve(args.port, settings.database_url, settings.temporal_address, settings.task_queue)
        return 0
    names = BENCHMARKS if args.benchmark == "all" else (args.benchmark,)
    for name in names:
        options = _parser().parse_args([name, *(["--keep"] if args.keep else [])])
        if name == args.benchmark:
            options = args
        print(asyncio.run(_runner(name)(options)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
