"""On ``suifang up`` (the embedded default, real time): a patient's emergency reply through a
channel webhook becomes, within a minute, an L3 emergency ticket, the patient's 120 message
and a page in the outbox; unacknowledged, the page escalates when the roster says; the CLI's
acknowledgement stops it and only then is the patient told a doctor knows."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from suifang.core.security.signing import sign_body
from tests.core.test_up import run_suifang

SECRET = "e2e-webhook-secret-0123456789abcd"
APP_USER = "app-user-e2e"
ESCALATE_AFTER = 30  # seconds: the shortest delay a roster may set

ROSTER = f"""
timezone: Asia/Shanghai
staff:
  - {{username: dr.wang, display_name: 王医生, role: doctor, departments: [cardiology]}}
  - {{username: nurse.li, display_name: 李护士, role: nurse, departments: [cardiology]}}
  - {{username: duty.chen, display_name: 陈总值班, role: doctor, departments: [duty_office]}}
departments:
  cardiology:
    paging: {{channels: [outbox], escalate_after: [{ESCALATE_AFTER}s]}}
    primary: dr.wang
    backup: nurse.li
  duty_office:
    primary: duty.chen
"""


@pytest.fixture
def e2e_env(ports_env: dict[str, str]) -> dict[str, str]:
    return {
        **ports_env,
        "SUIFANG_CHANNEL_WEBHOOK_URL": "http://127.0.0.1:9/unused",  # the patient prefers outbox
        "SUIFANG_CHANNEL_WEBHOOK_SECRETS": SECRET,
    }


@pytest.fixture
def up_e2e(e2e_env: dict[str, str], tmp_path: Path) -> Any:
    import sys

    process = subprocess.Popen(
        [sys.executable, "-m", "suifang.core.cli", "up"],
        env=e2e_env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def wait_for(check: Callable[[], Any], seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(1)
    raise AssertionError(f"not within {seconds:g} s: {what}")


def cli_json(env: dict[str, str], cwd: Path, *args: str) -> Any:
    result = run_suifang(*args, "--json", env=env, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
@pytest.mark.devserver
def test_an_emergency_reply_on_the_embedded_default_pages_escalates_and_is_acknowledged(
    up_e2e: subprocess.Popen[str], e2e_env: dict[str, str], tmp_path: Path
) -> None:
    api = f"http://127.0.0.1:{e2e_env['SUIFANG_API_PORT']}"
    wait_for(
        lambda: up_e2e.poll() is None and _healthy(api),
        120,
        "suifang up healthy",
    )
    (tmp_path / "roster.yaml").write_text(ROSTER, encoding="utf-8")
    imported = run_suifang(
        "oncall", "import", str(tmp_path / "roster.yaml"), env=e2e_env, cwd=tmp_path
    )
    assert imported.returncode == 0, imported.stderr
    now = dt.datetime.now(dt.UTC)
    discharge = {
        "pathway": "pci",
        "patient": {
            "external_id": "P-e2e",
            "name": "张伟",
            "app_user_id": APP_USER,
            "preferred_channels": ["outbox"],
        },
        "encounter": {
            "external_id": "V-e2e",
            "department": "cardiology",
            "discharged_at": (now - dt.timedelta(days=1)).isoformat(),
        },
    }
    (tmp_path / "discharge.json").write_text(json.dumps(discharge), encoding="utf-8")
    enrolled = run_suifang(
        "journeys", "enroll", str(tmp_path / "discharge.json"), env=e2e_env, cwd=tmp_path
    )
    assert enrolled.returncode == 0, enrolled.stderr

    body = json.dumps(
        {"type": "reply", "sender": APP_USER, "text": "我爸胸口特别闷，一直冒冷汗，快半个小时了"},
        ensure_ascii=False,
    ).encode()
    sent_at = time.monotonic()
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

    def outbox() -> list[dict[str, Any]]:
        return cli_json(e2e_env, tmp_path, "outbox", "--limit", "100")

    # Within a minute: the ticket, the patient's 120 message, the page to the on-call.
    ticket = wait_for(
        lambda: next(
            (
                t
                for t in cli_json(e2e_env, tmp_path, "tickets", "list")
                if t["priority"] == "emergency"
            ),
            None,
        ),
        60,
        "an emergency ticket",
    )
    assert ticket["tier"] == "L3"
    first_page = wait_for(
        lambda: [m for m in outbox() if m["kind"] == "page"], 60, "a page in the outbox"
    )
    assert time.monotonic() - sent_at < 60
    assert [m["recipient"] for m in first_page] == ["dr.wang"]
    told = [
        m for m in outbox() if m["ticket_id"] == ticket["id"] and m["kind"] == "ticket_emergency"
    ]
    assert len(told) == 1
    assert "120" in told[0]["body"]
    # Nobody acknowledges: the backup is paged after the roster's delay.
    pages = wait_for(
        lambda: (
            (found := [m for m in outbox() if m["kind"] == "page"]) and len(found) >= 2 and found
        ),
        ESCALATE_AFTER + 45,
        "the escalation page",
    )
    escalated_at = time.monotonic()
    pages.sort(key=lambda m: m["id"])
    assert [m["recipient"] for m in pages[:2]] == ["dr.wang", "nurse.li"]
    gap = dt.datetime.fromisoformat(pages[1]["created_at"]) - dt.datetime.fromisoformat(
        pages[0]["created_at"]
    )
    assert (
        dt.timedelta(seconds=ESCALATE_AFTER - 1) <= gap < dt.timedelta(seconds=ESCALATE_AFTER + 15)
    )
    # The backup acknowledges on the command line: the patient is told, the paging stops.
    acked = run_suifang(
        "tickets", "ack", str(ticket["id"]), "--as", "nurse.li", env=e2e_env, cwd=tmp_path
    )
    assert acked.returncode == 0, acked.stderr
    wait_for(
        lambda: [m for m in outbox() if m["kind"] == "ticket_doctor_notified"],
        60,
        "the patient told a clinician knows",
    )
    # Past the moment the next escalation would have paged (its delay after the backup's page).
    time.sleep(max(0.0, escalated_at + ESCALATE_AFTER + 5 - time.monotonic()))
    assert len([m for m in outbox() if m["kind"] == "page"]) == 2


def _healthy(api: str) -> bool:
    try:
        return httpx.get(f"{api}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
