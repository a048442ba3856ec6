"""Issue 19's "done when", on ``suifang up`` (real Temporal dev server, worker, API): a journey
with distinctive patient data leaves none of it in plaintext in the app database or its WAL,
the Temporal store or its WAL, or the logs; and every data file is the owner's alone."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from suifang.core.security.signing import sign_body
from tests.core.test_emergency_up import cli_json, wait_for
from tests.core.test_up import run_suifang

SECRET = "phi-webhook-secret-0123456789abcd"
APP_USER = "app-user-phi"
NAME = "慕容雪晴"
ID_NUMBER = "110101195107235417"
PHONE = "13877665544"
MRN = "MRN-MRXQ-5521"
DIAGNOSIS_TEXT = "前降支中段支架内再狭窄"
DOCTOR = "欧阳明德"
FREE_TEXT = "请问伤口结痂以后能不能洗澡呀谢谢大夫"
SECRETS = (NAME, ID_NUMBER, PHONE, MRN, DIAGNOSIS_TEXT, DOCTOR, FREE_TEXT)


@pytest.fixture
def phi_env(ports_env: dict[str, str]) -> dict[str, str]:
    return {
        **ports_env,
        "SUIFANG_CHANNEL_WEBHOOK_URL": "http://127.0.0.1:9/unused",  # the patient prefers outbox
        "SUIFANG_CHANNEL_WEBHOOK_SECRETS": SECRET,
    }


@pytest.fixture
def up_with_a_loose_umask(
    phi_env: dict[str, str], tmp_path: Path
) -> Iterator[subprocess.Popen[str]]:
    """``suifang up`` started the way a login shell would: umask 022 (files 0644)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "suifang.core.cli", "up"],
        env=phi_env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=lambda: os.umask(0o022),
    )  # fmt: skip
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _healthy(api: str) -> bool:
    try:
        return httpx.get(f"{api}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def plaintext_found(files: list[Path], text: str = "") -> dict[str, list[str]]:
    """Which secrets appear, in which file, as UTF-8 (the only encoding suifang writes)."""
    found: dict[str, list[str]] = {}
    for path in files:
        content = path.read_bytes()
        hits = [s for s in SECRETS if s.encode() in content]
        if hits:
            found[path.name] = hits
    hits = [s for s in SECRETS if s in text]
    if hits:
        found["suifang up output"] = hits
    return found


@pytest.mark.slow
@pytest.mark.devserver
def test_a_journey_on_suifang_up_leaves_no_plaintext_phi_and_private_files(
    up_with_a_loose_umask: subprocess.Popen[str], phi_env: dict[str, str], tmp_path: Path
) -> None:
    up = up_with_a_loose_umask
    api = f"http://127.0.0.1:{phi_env['SUIFANG_API_PORT']}"
    wait_for(lambda: up.poll() is None and _healthy(api), 120, "suifang up healthy")
    discharge = {
        "pathway": "pci",
        "patient": {
            "external_id": MRN,
            "name": NAME,
            "birth_date": "1951-07-23",
            "id_number": ID_NUMBER,
            "phone": PHONE,
            "app_user_id": APP_USER,
            "preferred_channels": ["outbox"],
        },
        "encounter": {
            "external_id": "VIS-MRXQ-5521",
            "department": "cardiology",
            "discharged_at": (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).isoformat(),
            "diagnosis_codes": ["I25.103"],
            "diagnosis_text": DIAGNOSIS_TEXT,
            "attending_doctor": DOCTOR,
        },
    }
    (tmp_path / "discharge.json").write_text(json.dumps(discharge), encoding="utf-8")
    enrolled = run_suifang(
        "journeys", "enroll", str(tmp_path / "discharge.json"), env=phi_env, cwd=tmp_path
    )
    assert enrolled.returncode == 0, enrolled.stderr
    body = json.dumps(
        {"type": "reply", "sender": APP_USER, "text": FREE_TEXT}, ensure_ascii=False
    ).encode()
    response = httpx.post(
        f"{api}/channels/webhook/inbound",
        content=body,
        headers={
            "X-Suifang-Signature": sign_body(body, SECRET.encode()),
            "Content-Type": "application/json",
        },
        timeout=30,
    )
    assert response.status_code == 200, response.text
    # The free text went all the way through: triaged by a workflow into a ticket.
    tickets = wait_for(
        lambda: cli_json(phi_env, tmp_path, "tickets", "list"), 60, "a ticket from the reply"
    )
    shown = run_suifang("tickets", "show", str(tickets[0]["id"]), env=phi_env, cwd=tmp_path)
    assert FREE_TEXT in shown.stdout, shown.stdout + shown.stderr  # readable with the keys

    data_dir = Path(phi_env["SUIFANG_DATA_DIR"])
    stores = ["suifang.db", "suifang.db-wal", "temporal.db", "temporal.db-wal", "temporal.log"]
    running = [data_dir / name for name in stores if (data_dir / name).exists()]
    assert {p.name for p in running} >= {"suifang.db", "suifang.db-wal", "temporal.db"}
    assert plaintext_found(running) == {}

    up.send_signal(signal.SIGINT)
    output, _ = up.communicate(timeout=60)
    assert up.returncode == 0, output
    files = [p for p in data_dir.iterdir() if p.is_file()]
    assert plaintext_found(files, output) == {}

    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files}
    assert {"suifang.db", "temporal.db", "temporal.log", "keys.json"} <= set(modes)
    assert modes == dict.fromkeys(modes, 0o600)
