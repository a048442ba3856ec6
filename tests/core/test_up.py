"""``suifang up`` for real: Temporal, worker and API come up, and all go down on Ctrl-C."""

from __future__ import annotations

import datetime as dt
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.workflows.test_hl7_intake import adt


def children_of(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def run_suifang(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "suifang.core.cli", *args],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout,
    )  # fmt: skip


@pytest.fixture
def up(ports_env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "suifang.core.cli", "up"],
        env=ports_env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.slow
@pytest.mark.devserver
def test_up_serves_a_healthy_platform_and_stops_every_child_on_sigint(
    up: subprocess.Popen[str], ports_env: dict[str, str]
) -> None:
    api = f"http://127.0.0.1:{ports_env['SUIFANG_API_PORT']}"
    deadline = time.monotonic() + 90
    health = None
    while time.monotonic() < deadline:
        assert up.poll() is None, up.stdout.read() if up.stdout else ""
        try:
            response = httpx.get(f"{api}/healthz", timeout=2)
        except httpx.HTTPError:
            time.sleep(0.5)
            continue
        health = response.json()
        if response.status_code == 200:
            break
        time.sleep(0.5)
    assert health == {
        "status": "ok",
        "database": {"ok": True, "detail": None},
        "temporal": {"ok": True, "detail": None},
    }
    assert httpx.get(f"{api}/journeys", timeout=5).status_code == 401  # the API is guarded
    assert httpx.get(f"{api}/openapi.json", timeout=5).status_code == 200
    # The HIS's ADT feed: a Chinese discharge over a real MLLP socket is taken and enrolled.
    a03 = Path(ports_env["SUIFANG_DATA_DIR"]).parent / "a03.hl7"
    now = dt.datetime.now(dt.UTC)
    a03.write_text(adt("A03", control_id="UP1", mrn="MRN-UP1", visit="V-UP1", discharged=now))
    sent = run_suifang(
        "hl7",
        "send",
        str(a03),
        "--port",
        ports_env["SUIFANG_HL7_MLLP_PORT"],
        env=ports_env,
        cwd=a03.parent,
    )
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "MSA|AA|UP1" in sent.stdout
    journeys = run_suifang("journeys", "list", "--json", env=ports_env, cwd=a03.parent)
    assert [j["pathway_id"] for j in json.loads(journeys.stdout)] == ["pci"], journeys.stderr
    # An operator's scraper sees the journey and the worker's task slots in one /metrics.
    added = run_suifang(
        "users", "add", "prometheus", "--role", "integrator", env=ports_env, cwd=a03.parent
    )
    assert added.returncode == 0, added.stderr
    token = run_suifang(
        "tokens", "create", "prometheus", "--scope", "metrics", env=ports_env, cwd=a03.parent
    )
    assert token.returncode == 0, token.stderr
    metrics = httpx.get(
        f"{api}/metrics", headers={"Authorization": f"Bearer {token.stdout.strip()}"}, timeout=10
    )
    assert metrics.status_code == 200, metrics.text
    assert 'suifang_journeys{status="active"} 1.0' in metrics.text
    assert "suifang_worker_metrics_up 1.0" in metrics.text
    assert "temporal_worker_task_slots_available{" in metrics.text
    children = children_of(up.pid)
    assert children, "the dev server should be a child of suifang up"
    up.send_signal(signal.SIGINT)
    output, _ = up.communicate(timeout=60)
    assert up.returncode == 0, output
    assert "suifang is up" in output
    assert f"Temporal Web UI  http://127.0.0.1:{ports_env['SUIFANG_TEMPORAL_UI_PORT']}" in output
    assert f"HL7 v2 (MLLP)    127.0.0.1:{ports_env['SUIFANG_HL7_MLLP_PORT']}" in output
    assert f"Metrics          {api}/metrics" in output
    assert "suifang: stopped." in output
    assert "Traceback" not in output
    assert not [pid for pid in children if alive(pid)], "a child outlived suifang up"
    assert (Path(ports_env["SUIFANG_DATA_DIR"]) / "temporal.db").exists()  # persistent store


def test_a_busy_port_is_one_clear_line(ports_env: dict[str, str], tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", int(ports_env["SUIFANG_API_PORT"])))
        holder.listen()
        result = run_suifang("up", env=ports_env, cwd=tmp_path)
    assert result.returncode == 1
    port = ports_env["SUIFANG_API_PORT"]
    assert result.stderr.strip().splitlines() == [
        f"suifang: error: port {port} on 127.0.0.1 is already in use (SUIFANG_API_PORT); "
        f"stop whatever holds it or choose another port with SUIFANG_API_PORT"
    ]


def test_a_missing_temporal_binary_is_one_clear_line(
    ports_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**ports_env, "SUIFANG_TEMPORAL_SERVER_PATH": str(tmp_path / "no-such-temporal")}
    result = run_suifang("up", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"suifang: error: {tmp_path / 'no-such-temporal'} is not an executable file "
        "(SUIFANG_TEMPORAL_SERVER_PATH)"
    ]


def test_a_worker_without_a_temporal_server_is_one_clear_line(
    ports_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**ports_env, "SUIFANG_TEMPORAL_CONNECT_WAIT": "2"}
    started = time.monotonic()
    result = run_suifang("worker", env=env, cwd=tmp_path)
    assert time.monotonic() - started >= 2  # it kept trying for as long as it was told
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        f"suifang: error: cannot reach Temporal at {ports_env['SUIFANG_TEMPORAL_ADDRESS']}"
    )
