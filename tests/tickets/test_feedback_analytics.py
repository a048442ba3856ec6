"""Issue 24: feedback hotspots by department and month, the words patients used, and how each
department resolves — from tickets opened through the real API and routed by the real triage."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pymupdf
from sqlmodel import Session
from temporalio.testing import WorkflowEnvironment

from suifang.core.api import create_app
from suifang.core.runtime import Runtime
from suifang.core.security.auth import Role, create_user, issue_token
from suifang.workflows.intake import DischargeIn, register_discharge

BASE = "http://suifang.test"
COMPLAINTS = [
    "停车场太难停了，找车位找了半个小时",
    "你们停车场收费太贵了，而且停车场没有指示牌",
    "食堂的饭菜太咸了，老人吃不了",
]


def token(runtime: Runtime, username: str, role: Role, departments: list[str] | None) -> dict:
    with Session(runtime.engine) as session:
        user = create_user(
            session, username=username, display_name=username, role=role, departments=departments
        )
        value, _ = issue_token(session, user, name="t")
    return {"Authorization": f"Bearer {value}"}


async def test_hotspots_phrases_and_resolution_by_department(
    runtime: Runtime, journey_worker: WorkflowEnvironment, cli: Any, tmp_path: Path
) -> None:
    now = await journey_worker.get_current_time()
    enrolled = await register_discharge(
        runtime,
        DischargeIn.model_validate(
            {
                "pathway": "pci",
                "patient": {"external_id": "F-1", "name": "钱伟", "preferred_channels": ["outbox"]},
                "encounter": {
                    "external_id": "V-F-1",
                    "department": "cardiology",
                    "discharged_at": now.isoformat(),
                },
            }
        ),
    )
    admin = token(runtime, "root", Role.ADMIN, None)
    nurse = token(runtime, "wang", Role.NURSE, ["cardiology"])
    # Tickets opened through the API are dated by the wall clock, the journey by the test
    # server's, which a long session moves on: the period covers both.
    wall = dt.datetime.now(dt.UTC)
    first, last = sorted([now.date(), wall.date()])
    period = {
        "from": (first - dt.timedelta(days=1)).isoformat(),
        "to": (last + dt.timedelta(days=1)).isoformat(),
    }
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(runtime)), base_url=BASE
    ) as api:
        for text in COMPLAINTS:
            opened = await api.post(
                "/tickets", json={"patient_id": enrolled.patient_id, "text": text}, headers=admin
            )
            assert opened.status_code == 201, opened.text
        for _ in range(100):  # each ticket's workflow routes it, a moment after it opens
            report = await api.get("/reports/feedback", params=period, headers=admin)
            if "unrouted" not in report.text:
                break
            await asyncio.sleep(0.1)
        mine = await api.get("/reports/feedback", params=period, headers=nurse)
        month = wall.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
        review_pdf = await api.get("/reports/monthly.pdf", params={"month": month}, headers=admin)
        review_html = await api.get(
            "/reports/monthly.html",
            params={"month": month, "department": "logistics"},
            headers=admin,
        )
        not_yours = await api.get(
            "/reports/monthly.pdf",
            params={"month": month, "department": "logistics"},
            headers=nurse,
        )
        not_a_month = await api.get(
            "/reports/monthly.pdf", params={"month": "2026-13"}, headers=admin
        )
        backwards = await api.get(
            "/reports/feedback", params={"from": period["to"], "to": period["from"]}, headers=admin
        )
        unknown = await api.get(
            "/reports/feedback", params={**period, "department": "astrology"}, headers=admin
        )
    assert report.status_code == 200, report.text
    found = report.json()
    assert found["tickets"] == 3
    by_department: dict[str, int] = {}
    for hotspot in found["hotspots"]:
        by_department[hotspot["department"]] = (
            by_department.get(hotspot["department"], 0) + hotspot["count"]
        )
        assert hotspot["month"] == wall.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
    assert by_department == {"logistics": 2, "catering": 1}
    logistics = {p["phrase"]: p["count"] for p in found["top_phrases"]["logistics"]}
    assert logistics["停车场"] == 2, logistics
    assert "你们" not in logistics
    (resolution,) = [r for r in found["resolution"] if r["department"] == "logistics"]
    assert (resolution["opened"], resolution["resolved"]) == (2, 0)
    assert mine.status_code == 200
    assert mine.json()["tickets"] == 0, "a cardiology nurse does not see logistics' tickets"
    assert review_pdf.status_code == 200, review_pdf.text
    assert review_pdf.headers["content-type"] == "application/pdf"
    served = pymupdf.open(stream=review_pdf.content, filetype="pdf")
    assert f"月度随访质量报告 {month} · 全院" in "".join(page.get_text() for page in served)
    assert review_html.status_code == 200
    assert f"月度随访质量报告 {month} · logistics" in review_html.text
    assert "parking" in review_html.text
    assert "catering" not in review_html.text, "only logistics' own tickets"
    assert not_yours.status_code == 403, "a cardiology nurse gets no logistics review"
    assert not_a_month.status_code == 422
    assert "not a month" in not_a_month.text
    assert backwards.status_code == 422
    assert unknown.status_code == 422
    assert "astrology" in unknown.json()["error"]["message"]

    code, out, err = cli("report", "feedback", "--from", period["from"], "--to", period["to"])
    assert code == 0, out + err
    assert "Hotspots" in out
    assert "停车场 (2)" in out
    code, out, err = cli("report", "feedback", "--from", "2026-13-01", "--to", period["to"])
    assert code != 0
    assert "is not a date" in out + err

    pdf, html = tmp_path / "monthly.pdf", tmp_path / "monthly.html"
    for out in (pdf, html):
        code, said, err = cli("report", "monthly", "--month", month, "--out", str(out))
        assert code == 0, said + err
    document = pymupdf.open(pdf)
    text = "".join(page.get_text() for page in document)
    assert f"月度随访质量报告 {month} · 全院" in text
    for section in ("随访质量指标", "每日新开工单", "反馈热点", "工作量"):
        assert section in text, section
    assert "出院患者入组率" in text, "every KPI by its Chinese name"
    assert "logistics" in text
    assert [image for page in document for image in page.get_images()], "the per-day chart"
    assert "反馈热点" in html.read_text(encoding="utf-8")
    (tmp_path / "monthly-page-1.png").write_bytes(document[0].get_pixmap(dpi=70).tobytes("png"))
    code, said, err = cli("report", "monthly", "--month", "2026-13", "--out", str(pdf))
    assert code != 0
    assert "is not a month" in said + err
