"""``suifang up`` for real: Temporal, worker and API come up, and all go down on Ctrl-C."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from cryptography.fernet import Fernet

from suifang.core.embedded import free_port
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


def wait_healthy(api: str, up: subprocess.Popen[str], seconds: float = 90) -> object:
    """The API's last /healthz answer, once it is 200 (or the time is up)."""
    deadline = time.monotonic() + seconds
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
    return health


def send_a03(ports_env: dict[str, str], visit: str) -> None:
    """A discharge over the real MLLP listener, acknowledged AA."""
    a03 = Path(ports_env["SUIFANG_DATA_DIR"]).parent / f"{visit}.hl7"
    now = dt.datetime.now(dt.UTC)
    a03.write_text(adt("A03", control_id=visit, mrn=f"MRN-{visit}", visit=visit, discharged=now))
    sent = run_suifang(
        "hl7", "send", str(a03), "--port", ports_env["SUIFANG_HL7_MLLP_PORT"],
        env=ports_env, cwd=a03.parent,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert f"MSA|AA|{visit}" in sent.stdout


def dev_server_pid(up_pid: int) -> int:
    for pid in children_of(up_pid):
        with contextlib.suppress(OSError):
            if b"start-dev" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
    raise AssertionError("no Temporal dev server under suifang up")


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
    health = wait_healthy(api, up)
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


@pytest.mark.slow
@pytest.mark.devserver
def test_up_starts_its_temporal_server_again_when_it_is_killed(
    up: subprocess.Popen[str], ports_env: dict[str, str]
) -> None:
    api = f"http://127.0.0.1:{ports_env['SUIFANG_API_PORT']}"
    assert wait_healthy(api, up) is not None
    send_a03(ports_env, "BEFORE")
    killed = dev_server_pid(up.pid)
    os.kill(killed, signal.SIGKILL)
    time.sleep(1)
    health = wait_healthy(api, up, seconds=120)
    assert health == {
        "status": "ok",
        "database": {"ok": True, "detail": None},
        "temporal": {"ok": True, "detail": None},
    }
    assert dev_server_pid(up.pid) != killed
    # The platform works on: a new discharge is enrolled and its journey started by the
    # worker, and the journey from before the crash is still there (the store is on disk).
    send_a03(ports_env, "AFTER")
    cwd = Path(ports_env["SUIFANG_DATA_DIR"]).parent
    journeys = json.loads(run_suifang("journeys", "list", "--json", env=ports_env, cwd=cwd).stdout)
    assert sorted(j["status"] for j in journeys) == ["active", "active"]
    for journey in journeys:
        shown = run_suifang(
            "journeys", "show", str(journey["enrollment_id"]), env=ports_env, cwd=cwd
        )
        assert shown.returncode == 0, shown.stderr
    status = run_suifang("status", "--json", env=ports_env, cwd=cwd)
    assert status.returncode == 0, status.stdout + status.stderr
    parts = {p["part"]: p for p in json.loads(status.stdout)}
    assert set(parts) == {"database", "temporal", "worker", "api", "hl7 listener"}
    assert all(p["ok"] for p in parts.values()), parts
    assert "polling 'suifang'" in parts["worker"]["detail"]
    up.send_signal(signal.SIGINT)
    output, _ = up.communicate(timeout=60)
    assert up.returncode == 0, output
    assert "the Temporal dev server exited (code -9); starting it again in 1 s" in output
    assert "the Temporal dev server is back" in output
    assert "suifang: stopped." in output
    assert "Traceback" not in output


def test_status_says_which_part_is_down(
    cli: Callable[..., tuple[int, str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("TEMPORAL_ADDRESS", "API_PORT", "HL7_MLLP_PORT"):
        port = str(free_port())
        value = f"127.0.0.1:{port}" if name == "TEMPORAL_ADDRESS" else port
        monkeypatch.setenv(f"SUIFANG_{name}", value)
    code, out, err = cli("status")
    assert code == 1, (out, err)
    rows = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    assert "not migrated: run suifang db upgrade" in rows["database"]
    assert "unreachable at 127.0.0.1:" in rows["temporal"]
    assert "NO" in rows["api"]
    assert "ConnectError" in rows["api"]
    assert "NO" in rows["hl7"]
    assert "Traceback" not in out + err


@pytest.mark.slow
@pytest.mark.devserver
def test_a_backup_taken_while_up_restores_to_a_platform_whose_journeys_continue(
    up: subprocess.Popen[str], ports_env: dict[str, str], tmp_path: Path
) -> None:
    api = f"http://127.0.0.1:{ports_env['SUIFANG_API_PORT']}"
    assert wait_healthy(api, up) is not None
    send_a03(ports_env, "BACKUP1")
    archive = tmp_path / "suifang-backup.tar.gz"
    taken = run_suifang("backup", str(archive), env=ports_env, cwd=tmp_path)  # online
    assert taken.returncode == 0, taken.stdout + taken.stderr
    assert "temporal.db:" in taken.stdout
    assert "suifang.db:" in taken.stdout
    assert "The keys are not in the backup" in taken.stderr
    assert oct(archive.stat().st_mode & 0o777) == "0o600"
    again = run_suifang("backup", str(archive), env=ports_env, cwd=tmp_path)
    assert again.returncode != 0
    assert "exists already" in again.stderr
    up.send_signal(signal.SIGINT)
    up.communicate(timeout=60)

    # Another machine: an empty data directory.
    elsewhere = {**ports_env, "SUIFANG_DATA_DIR": str(tmp_path / "restored")}
    refused = run_suifang("restore", str(archive), env=elsewhere, cwd=tmp_path)
    assert refused.returncode != 0
    assert "no keys here" in refused.stderr
    assert "Traceback" not in refused.stderr
    Path(elsewhere["SUIFANG_DATA_DIR"]).mkdir(mode=0o700)
    wrong = {"encryption_keys": [Fernet.generate_key().decode()], "blind_index_key": "x" * 44}
    keys = Path(elsewhere["SUIFANG_DATA_DIR"]) / "keys.json"
    keys.write_text(json.dumps(wrong))
    refused = run_suifang("restore", str(archive), env=elsewhere, cwd=tmp_path)
    assert "not the ones this backup was written with" in refused.stderr
    shutil.copy(Path(ports_env["SUIFANG_DATA_DIR"]) / "keys.json", keys)
    restored = run_suifang("restore", str(archive), env=elsewhere, cwd=tmp_path)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "start with suifang up" in restored.stdout
    again = run_suifang("restore", str(archive), env=elsewhere, cwd=tmp_path)
    assert "holds data already" in again.stderr
    forced = run_suifang("restore", str(archive), "--force", env=elsewhere, cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert "the data that was here is in" in forced.stdout

    second = subprocess.Popen(
        [sys.executable, "-m", "suifang.core.cli", "up"],
        env=elsewhere, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert wait_healthy(api, second) is not None
        listed = run_suifang("journeys", "list", "--json", env=elsewhere, cwd=tmp_path)
        journeys = json.loads(listed.stdout)
        assert [j["status"] for j in journeys] == ["active"], listed.stderr
        shown = run_suifang(
            "journeys", "show", str(journeys[0]["enrollment_id"]), "--json",
            env=elsewhere, cwd=tmp_path,
        )  # fmt: skip
        # The journey's workflow came back with the store and answers its query.
        assert json.loads(shown.stdout)["progress"] is not None, shown.stderr
        send_a03(elsewhere, "BACKUP2")  # and the restored platform takes new discharges
    finally:
        second.send_signal(signal.SIGINT)
        output, _ = second.communicate(timeout=60)
    assert second.returncode == 0, output


@pytest.mark.slow
@pytest.mark.devserver
def test_the_demo_gives_a_printable_patient_report_and_a_monthly_review(
    up: subprocess.Popen[str], ports_env: dict[str, str], tmp_path: Path
) -> None:
    """Issue 24: after ``suifang demo`` on the embedded default, a patient's report and the
    month's review come out as PDFs with their Chinese text, fonts and charts."""
    import pymupdf

    api = f"http://127.0.0.1:{ports_env['SUIFANG_API_PORT']}"
    assert wait_healthy(api, up) is not None
    demo = run_suifang("demo", env=ports_env, cwd=tmp_path)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    row = next(line.split() for line in demo.stdout.splitlines() if "王秀英" in line)
    patient = row[1]
    assert "suifang patients report <PATIENT ID>" in demo.stdout
    # The year of readings before the stay tagged the hypertensive patient at intake.
    hypertensive = next(line.split() for line in demo.stdout.splitlines() if "刘洋" in line)[1]
    record = run_suifang("patients", "show", hypertensive, "--record", env=ports_env, cwd=tmp_path)
    assert "bp_uncontrolled" in record.stdout, record.stdout + record.stderr
    opened = run_suifang(
        "tickets", "create", patient, "停车场太难停了，转了半小时都没有车位",
        env=ports_env, cwd=tmp_path,
    )  # fmt: skip
    assert opened.returncode == 0, opened.stderr

    today = dt.datetime.now(dt.UTC).date()
    report = tmp_path / "patient.pdf"
    made = run_suifang(
        "patients", "report", patient, "--from", str(today - dt.timedelta(days=365)),
        "--out", str(report), env=ports_env, cwd=tmp_path,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    document = pymupdf.open(report)
    text = "".join(page.get_text() for page in document)
    for words in (
        "健康阶段总结",
        "王秀英",
        "性别: 女",
        "心脏支架术后随访",
        "收缩压",
        "舒张压",
        "下降",
    ):
        assert words in text, words
    assert len([i for page in document for i in page.get_images()]) >= 3, "a chart per indicator"
    fonts = {font[3] for page in document for font in page.get_fonts()}
    assert any("NotoSansCJK" in name for name in fonts), fonts

    month = dt.datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
    review = tmp_path / "month.pdf"
    made = run_suifang(
        "report", "monthly", "--month", month, "--out", str(review), env=ports_env, cwd=tmp_path
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    document = pymupdf.open(review)
    text = "".join(page.get_text() for page in document)
    for words in ("月度随访质量报告", "全院", "随访覆盖率", "反馈热点", "parking"):
        assert words in text, words
    assert [i for page in document for i in page.get_images()], "the tickets-per-day chart"
    first = document[0].get_pixmap(dpi=60)
    assert len(set(first.samples)) > 10, "the page is not blank"
