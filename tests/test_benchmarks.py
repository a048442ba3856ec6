"""The benchmark script runs and reports: each benchmark at a tiny size, its BENCH line parsed.

Numbers are not judged here (they depend on the machine; docs/benchmarks.md has them); what
a user of the script relies on is: it starts everything itself, completes what it started,
cleans up, and prints one parseable summary line.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"

pytestmark = [pytest.mark.slow, pytest.mark.devserver, pytest.mark.timeout(600)]


def bench(*argv: str) -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *argv],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    last = done.stdout.strip().splitlines()[-1]
    words = last.split()
    assert words[0] == "BENCH", last
    return dict(word.split("=", 1) for word in words[2:])


def test_throughput_runs_both_shapes_to_completion() -> None:
    result = bench("throughput", "--journeys", "4", "--warmup", "1", "--concurrency", "4")
    assert result["suifang_completed"] == result["baseline_completed"] == "4"
    assert float(result["ratio"]) > 0
    # The shapes are not the same: suifang also records what each touchpoint did. Records made
    # before a send go with the send; the rest (at least the last answer's, before the journey
    # completes) are written by record_batch activities, never by local ones. How many depends
    # on when answers arrive: at most one write before each wait (an answer, the next
    # touchpoint's time: 2 per touchpoint) and before the end, and one more for each answer
    # that arrives while a write is out (the loop asks the core again after every write).
    touchpoints = 4
    writes = int(result["suifang_activities_per_journey"]) - touchpoints  # one send each
    assert 1 <= writes <= 2 * touchpoints + 1 + touchpoints
    assert int(result["suifang_local_activities_per_journey"]) == 0


def test_sla_timers_never_fire_early() -> None:
    result = bench(
        "sla", "--tickets", "10", "--window", "3", "--open-rate", "10", "--warning-lead", "5"
    )
    assert result["tickets"] == "10"
    assert result["timers"] == "20"  # a warning and a breach per ticket
    assert result["early"] == "0"


def test_api_latency_is_measured_without_errors() -> None:
    result = bench("api", "--rate", "3", "--seconds", "2")
    assert result["requests"] == "12"
    assert result["errors"] == "0"
    assert float(result["intake_p50_ms"]) > 0
    assert float(result["ticket_p50_ms"]) > 0


def test_hl7_intake_is_measured_against_json_without_errors() -> None:
    result = bench("hl7", "--rate", "3", "--seconds", "2")
    assert result["messages"] == "6"
    assert (result["json_errors"], result["mllp_errors"]) == ("0", "0")  # every ACK an AA
    assert float(result["mllp_p50_ms"]) > 0
    assert float(result["mllp_p99_ratio"]) > 0


def test_memory_and_capacity_count_what_they_started() -> None:
    memory = bench("memory", "--journeys", "20")
    assert int(memory["cached_after"]) - int(memory["cached_before"]) == 20
    tickets = bench("memory", "--kind", "ticket", "--count", "20")
    assert (tickets["kind"], tickets["workflows"]) == ("ticket", "20")
    assert int(tickets["cached_after"]) - int(tickets["cached_before"]) == 20
    capacity = bench("capacity", "--journeys", "30", "--sample", "5")
    assert capacity["sample_ok"] == "5"
    assert capacity["visible_running"] == "30"


def test_records_at_scale_are_timed_against_the_bound() -> None:
    result = bench(
        "records",
        "--observations",
        "2000",
        "--tickets",
        "300",
        "--patients",
        "100",
        "--repeat",
        "1",
    )
    assert (result["observations"], result["tickets"]) == ("2000", "300")
    assert int(result["patient_readings"]) > 0
    for key in ("record_s", "trend_s", "monthly_s", "monthly_pdf_s", "count_baseline_s"):
        assert float(result[key]) > 0, key
    assert result["within_bound"] in ("yes", "no")
