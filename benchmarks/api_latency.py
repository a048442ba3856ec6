"""API latency: intake and ticket creation at a fixed request rate, from another process,
against a bare FastAPI baseline in the same run.

``suifang api`` (uvicorn) and the real worker run as their own processes on the embedded
default; this process is the client. Every ``1 / rate`` seconds it fires one intake
(``POST /intake/discharges``, a PCI discharge) and one ticket creation (``POST /tickets``, a
patient's question) without waiting for earlier ones — an open loop, so a slow answer
cannot lower the offered load. First, the same total rate goes to the baseline
(``api_baseline.py``: one row inserted and one bare workflow started per request, same
database, same Temporal server). Reported: p50/p99/max per kind and for the baseline, the
ratio of suifang's intake p99 to the baseline's p99, the rate achieved, errors.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import psutil
from harness import (
    Platform,
    describe_latencies,
    free_port,
    log,
    machine,
    pci_discharge,
    summary_line,
)

QUESTIONS = ("请问支架术后多久可以洗澡?", "阿司匹林饭前吃还是饭后吃?", "复查需要空腹吗?")


async def main(args: Any) -> str:
    async with Platform(keep=args.keep) as platform:
        token = platform.admin_token()
        platform.start_worker_process()
        baseline_port = free_port()
        platform.start_baseline_api_process(baseline_port)
        baseline = await _baseline_latencies(args, baseline_port)
        log(f"baseline p50 {baseline['p50_ms']:.1f} ms p99 {baseline['p99_ms']:.1f} ms")
        api_process = psutil.Process(platform.start_api_process().pid)
        run = uuid.uuid4().hex[:6]
        base = f"http://127.0.0.1:{platform.settings.api_port}"
        latencies: dict[str, list[float]] = {"intake": [], "ticket": []}
        errors: dict[str, int] = {"intake": 0, "ticket": 0}
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(
            base_url=base, headers=headers, timeout=60, limits=limits
        ) as http:
            # One patient for the tickets, and a warm-up so first-use costs are not measured.
            first = await http.post("/intake/discharges", json=pci_discharge(run, 0))
            first.raise_for_status()
            patient_id = first.json()["patient_id"]
            for number in range(1, 6):
                await http.post("/intake/discharges", json=pci_discharge(run, number))
            # The first ticket loads the triage's models (seconds): not what is measured.
            for question in QUESTIONS:
                warm = await http.post(
                    "/tickets", json={"patient_id": patient_id, "text": question}
                )
                warm.raise_for_status()

            async def timed(kind: str, method: str, path: str, body: dict[str, Any]) -> None:
                began = time.perf_counter()
                try:
                    response = await http.request(method, path, json=body)
                    ok = response.status_code in (200, 201)
                    why = f"{response.status_code} {response.text[:120]}"
                except httpx.HTTPError as exc:
                    ok = False
                    why = type(exc).__name__
                if ok:
                    latencies[kind].append(time.perf_counter() - began)
                else:
                    errors[kind] += 1
                    if errors[kind] <= 3:
                        log(f"{kind} failed: {why}")

            total = int(args.rate * args.seconds)
            # CPU seconds the API spends per request: steadier than latency near saturation,
            # where a few per cent of machine speed swing the queue (and p99) by seconds.
            cpu_before = sum(api_process.cpu_times()[:2])
            log(f"offering {args.rate:g} intakes/s and as many tickets for {args.seconds:g} s")
            tasks: list[asyncio.Task[None]] = []
            began = time.perf_counter()
            for index in range(total):
                due = began + index / args.rate
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                number = 100 + index
                tasks.append(
                    asyncio.ensure_future(
                        timed("intake", "POST", "/intake/discharges", pci_discharge(run, number))
                    )
                )
                question = {
                    "patient_id": patient_id,
                    "text": f"{QUESTIONS[index % len(QUESTIONS)]}({index})",
                }
                tasks.append(asyncio.ensure_future(timed("ticket", "POST", "/tickets", question)))
            offered_seconds = time.perf_counter() - began
            await asyncio.gather(*tasks)
            elapsed = time.perf_counter() - began
            api_cpu_ms = (sum(api_process.cpu_times()[:2]) - cpu_before) * 1000 / (2 * total)
        intake = describe_latencies(latencies["intake"])
        ticket = describe_latencies(latencies["ticket"])
        log(f"intake p50 {intake['p50_ms']:.1f} ms p99 {intake['p99_ms']:.1f} ms")
        log(f"ticket p50 {ticket['p50_ms']:.1f} ms p99 {ticket['p99_ms']:.1f} ms")
    return summary_line(
        "api_latency",
        {
            "rate_per_kind": args.rate,
            "seconds": args.seconds,
            "requests": 2 * total,
            "offered_per_s": 2 * total / offered_seconds if offered_seconds else 0.0,
            "completed_per_s": 2 * total / elapsed,
            "intake_p50_ms": intake["p50_ms"],
            "intake_p99_ms": intake["p99_ms"],
            "intake_max_ms": intake["max_ms"],
            "ticket_p50_ms": ticket["p50_ms"],
            "ticket_p99_ms": ticket["p99_ms"],
            "ticket_max_ms": ticket["max_ms"],
            "baseline_p50_ms": baseline["p50_ms"],
            "baseline_p99_ms": baseline["p99_ms"],
            "baseline_max_ms": baseline["max_ms"],
            "intake_p99_ratio": (
                intake["p99_ms"] / baseline["p99_ms"] if baseline["p99_ms"] else 0.0
            ),
            "api_cpu_ms_per_request": api_cpu_ms,
            "errors": errors["intake"] + errors["ticket"],
            "baseline_errors": baseline["errors"],
            "load1": machine()["load1"],
        },
    )


async def _baseline_latencies(args: Any, port: int) -> dict[str, float]:
    """The baseline offered suifang's total request rate (both kinds) for as long."""
    rate, total = 2 * args.rate, int(2 * args.rate * args.seconds)
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", timeout=60, limits=limits
    ) as http:
        for number in range(10):  # warm-up
            await http.post("/baseline", json=pci_discharge("warm", number))

        async def timed(number: int) -> None:
            nonlocal errors
            began = time.perf_counter()
            try:
                response = await http.post("/baseline", json=pci_discharge("base", number))
                ok = response.status_code == 201
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - began)
            else:
                errors += 1

        log(f"offering the baseline {rate:g} requests/s for {args.seconds:g} s")
        tasks: list[asyncio.Task[None]] = []
        began = time.perf_counter()
        for index in range(total):
            await asyncio.sleep(max(0.0, began + index / rate - time.perf_counter()))
            tasks.append(asyncio.ensure_future(timed(index)))
        await asyncio.gather(*tasks)
    return {**describe_latencies(latencies), "errors": errors}
