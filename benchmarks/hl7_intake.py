"""HL7 v2 intake: ADT^A03 over MLLP against the JSON intake, at the same rate, in the same run.

The worker, ``suifang api`` and ``suifang hl7 listen`` run as their own processes on the
embedded default; this process is the client. First the JSON intake (``POST
/intake/discharges``, a PCI discharge) is offered ``rate`` requests a second for ``seconds``,
open loop; then the same discharges as ADT^A03 messages over MLLP, each on a connection from a
pool (an engine's connection carries one message at a time, so an open loop needs several).
Reported: p50/p99/max of each (request to response, send to ACK), the ratio of the MLLP p99
to the JSON p99, the rates achieved, errors and non-AA ACKs.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
import uuid
from typing import Any

import httpx
from harness import (
    Platform,
    describe_latencies,
    free_port,
    log,
    machine,
    pci_discharge,
    summary_line,
)
from hl7.mllp import open_hl7_connection


def adt_a03(run: str, number: int) -> bytes:
    """The PCI discharge of :func:`pci_discharge` as a Chinese HIS sends it."""
    now = dt.datetime.now(dt.UTC)
    stamp = now.strftime("%Y%m%d%H%M%S+0000")
    admitted = (now - dt.timedelta(days=4)).strftime("%Y%m%d%H%M%S+0000")
    pv1 = ["PV1", "1", "I", "XNK^12^3", "", "", "", "D01^李^明", "", "", "XNK"]
    pv1 += [""] * (19 - len(pv1)) + [f"HV-{run}-{number}"]
    pv1 += [""] * (44 - len(pv1)) + [admitted, stamp]
    segments = [
        f"MSH|^~\\&|HIS|HOSP|SUIFANG|HOSP|{stamp}||ADT^A03^ADT_A03|{run}-{number}|P|2.5"
        "|||||CHN|UNICODE UTF-8",
        f"EVN|A03|{stamp}",
        f"PID|1||HP-{run}-{number}^^^HOSP^MR||李^建国||19620308|M|||||139{number % 10**8:08d}",
        "|".join(pv1),
        "DG1|1||I21.4^急性非ST段抬高型心肌梗死^I10",
        "PR1|1||36.06^经皮冠状动脉支架置入术^ICD9CM3",
    ]
    return ("\r".join(segments) + "\r").encode("utf-8")


async def main(args: Any) -> str:
    async with Platform(keep=args.keep) as platform:
        token = platform.admin_token()
        platform.start_worker_process()
        platform.start_api_process()
        hl7_port = free_port()
        platform.start_hl7_listener_process(hl7_port)
        run = uuid.uuid4().hex[:6]
        base = f"http://127.0.0.1:{platform.settings.api_port}"
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        async with httpx.AsyncClient(
            base_url=base,
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
            limits=limits,
        ) as http:
            for number in range(5):  # first-use costs are not what is measured
                (
                    await http.post("/intake/discharges", json=pci_discharge("warm", number))
                ).raise_for_status()
            json_latencies, json_errors, json_seconds = await _offer(
                args, lambda n: _post_json(http, run, n)
            )
        log(f"JSON intake p99 {describe_latencies(json_latencies)['p99_ms']:.1f} ms")
        pool = _Connections(hl7_port)
        try:
            for number in range(5):
                await pool.send(adt_a03("warm", number))
            mllp_latencies, mllp_errors, mllp_seconds = await _offer(
                args, lambda n: _send_mllp(pool, run, n)
            )
        finally:
            await pool.close()
        log(f"MLLP intake p99 {describe_latencies(mllp_latencies)['p99_ms']:.1f} ms")
    json_stats = describe_latencies(json_latencies)
    mllp_stats = describe_latencies(mllp_latencies)
    total = int(args.rate * args.seconds)
    return summary_line(
        "hl7_intake",
        {
            "rate": args.rate,
            "seconds": args.seconds,
            "messages": total,
            "json_completed_per_s": total / json_seconds,
            "mllp_completed_per_s": total / mllp_seconds,
            "json_p50_ms": json_stats["p50_ms"],
            "json_p99_ms": json_stats["p99_ms"],
            "mllp_p50_ms": mllp_stats["p50_ms"],
            "mllp_p99_ms": mllp_stats["p99_ms"],
            "mllp_max_ms": mllp_stats["max_ms"],
            "mllp_p99_ratio": (
                mllp_stats["p99_ms"] / json_stats["p99_ms"] if json_stats["p99_ms"] else 0.0
            ),
            "json_errors": json_errors,
            "mllp_errors": mllp_errors,
            "load1": machine()["load1"],
        },
    )


async def _offer(args: Any, one: Any) -> tuple[list[float], int, float]:
    """``one(number)`` fired ``args.rate`` times a second for ``args.seconds``, open loop."""
    latencies: list[float] = []
    errors = 0

    async def timed(number: int) -> None:
        nonlocal errors
        began = time.perf_counter()
        try:
            ok = await one(number)
        except (httpx.HTTPError, OSError, asyncio.IncompleteReadError, TimeoutError):
            ok = False
        if ok:
            latencies.append(time.perf_counter() - began)
        else:
            errors += 1

    total = int(args.rate * args.seconds)
    log(f"offering {args.rate:g} intakes/s for {args.seconds:g} s")
    tasks = []
    began = time.perf_counter()
    for index in range(total):
        await asyncio.sleep(max(0.0, began + index / args.rate - time.perf_counter()))
        tasks.append(asyncio.ensure_future(timed(1000 + index)))
    await asyncio.gather(*tasks)
    return latencies, errors, time.perf_counter() - began


async def _post_json(http: httpx.AsyncClient, run: str, number: int) -> bool:
    response = await http.post("/intake/discharges", json=pci_discharge(run, number))
    return response.status_code in (200, 201)


async def _send_mllp(pool: _Connections, run: str, number: int) -> bool:
    ack = await pool.send(adt_a03(run, number))
    return b"MSA|AA|" in ack


class _Connections:
    """Persistent MLLP connections, each carrying one message at a time."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[tuple[Any, Any]] = []
        self.all: list[Any] = []

    async def send(self, message: bytes) -> bytes:
        if self.idle:
            reader, writer = self.idle.pop()
        else:
            reader, writer = await open_hl7_connection("127.0.0.1", self.port)
            self.all.append(writer)
        writer.writeblock(message)
        await writer.drain()
        ack = await asyncio.wait_for(reader.readblock(), 60)
        self.idle.append((reader, writer))
        return ack

    async def close(self) -> None:
        for writer in self.all:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
