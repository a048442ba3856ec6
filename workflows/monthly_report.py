"""The monthly follow-up quality review (月度随访质量报告), per department or hospital-wide.

One month, in the hospital's calendar: every KPI of docs/kpis.md (SLA compliance among them),
the feedback hotspot table, staff workload (tickets per assignee: opened, resolved, SLA
breached) and a chart of tickets opened per day. As HTML (one page) and as PDF with the
Chinese font embedded, like the patient report.
"""

from __future__ import annotations

import datetime as dt
import io
from collections import Counter
from zoneinfo import ZoneInfo

import jinja2
from fpdf import FPDF
from fpdf.fonts import FontFace
from matplotlib.figure import Figure
from pydantic import BaseModel
from sqlmodel import Session, col, select

from suifang.core.errors import ValidationFailed
from suifang.core.models import Ticket
from suifang.tickets.analytics import FeedbackReport, feedback_report
from suifang.workflows.health_report import CJK_FONT, TEMPLATES
from suifang.workflows.kpis import KpiReport, compute_kpis

__all__ = ["MonthlyReport", "build_monthly_report", "monthly_html", "monthly_pdf", "parse_month"]


class Workload(BaseModel):
    assignee: str
    opened: int
    resolved: int
    breached: int


class MonthlyReport(BaseModel):
    month: str
    department: str | None
    kpis: KpiReport
    feedback: FeedbackReport
    workload: list[Workload]
    tickets_per_day: dict[str, int]


def parse_month(value: str) -> tuple[dt.date, dt.date]:
    """``2026-11`` → its first and last day."""
    try:
        first = dt.date.fromisoformat(f"{value}-01")
    except ValueError:
        raise ValidationFailed(f"month: {value!r} is not a month (YYYY-MM)") from None
    following = (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return first, following - dt.timedelta(days=1)


def build_monthly_report(
    session: Session,
    *,
    month: str,
    timezone: str,
    department: str | None = None,
    scope: list[str] | None = None,
) -> MonthlyReport:
    first, last = parse_month(month)
    kpis = compute_kpis(
        session, start=first, end=last, department=department, departments=scope, timezone=timezone
    )
    feedback = feedback_report(
        session, start=first, end=last, timezone=timezone, department=department, scope=scope
    )
    query = select(Ticket).where(
        col(Ticket.opened_at) >= kpis.window_start, col(Ticket.opened_at) < kpis.window_end
    )
    if department is not None:
        query = query.where(Ticket.department_code == department)
    if scope is not None:
        query = query.where(col(Ticket.department_code).in_(scope))
    tickets = session.exec(query).all()
    zone = ZoneInfo(timezone)
    per_day: Counter[str] = Counter(t.opened_at.astimezone(zone).strftime("%m-%d") for t in tickets)
    days = [
        (first + dt.timedelta(days=i)).strftime("%m-%d") for i in range((last - first).days + 1)
    ]
    load: dict[str, list[Ticket]] = {}
    for ticket in tickets:
        load.setdefault(ticket.assignee or "(unassigned)", []).append(ticket)
    return MonthlyReport(
        month=month,
        department=department,
        kpis=kpis,
        feedback=feedback,
        workload=sorted(
            (
                Workload(
                    assignee=who,
                    opened=len(rows),
                    resolved=sum(1 for t in rows if t.resolved_at is not None),
                    breached=sum(1 for t in rows if t.breached),
                )
                for who, rows in load.items()
            ),
            key=lambda w: (-w.opened, w.assignee),
        ),
        tickets_per_day={day: per_day.get(day, 0) for day in days},
    )


def _value(kpi: object) -> str:
    value = getattr(kpi, "value", None)
    if value is None:
        return "—"
    unit = getattr(kpi, "unit", "")
    return f"{value:.1f}%" if unit == "percent" else f"{value:g}"


def _chart(report: MonthlyReport) -> bytes:
    figure = Figure(figsize=(6.4, 2.2), dpi=130)
    axes = figure.subplots()
    days = list(report.tickets_per_day)
    axes.bar(range(len(days)), list(report.tickets_per_day.values()), color="#1565c0")
    axes.set_xticks(range(0, len(days), 5), [days[i] for i in range(0, len(days), 5)])
    axes.set_ylabel("tickets")
    axes.grid(axis="y", alpha=0.3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def _title(report: MonthlyReport) -> str:
    return f"月度随访质量报告 {report.month} · {report.department or '全院'}"


def monthly_pdf(report: MonthlyReport) -> bytes:
    pdf = FPDF(format="A4")
    pdf.add_font("cjk", "", str(CJK_FONT))
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("cjk", size=17)
    pdf.cell(0, 12, _title(report), new_x="LMARGIN", new_y="NEXT")

    def heading(title: str) -> None:
        pdf.ln(2)
        pdf.set_font("cjk", size=13)
        pdf.cell(0, 9, title, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("cjk", size=9)

    def table(headers: list[str], rows: list[list[str]], widths: list[int]) -> None:
        # The embedded CJK font has no bold: headings are shaded instead.
        headings = FontFace(emphasis="", fill_color=(230, 236, 244))
        with pdf.table(
            col_widths=widths, text_align="LEFT", line_height=5.5, headings_style=headings
        ) as grid:
            grid.row(headers)
            for row in rows:
                grid.row(row)

    heading("随访质量指标 KPIs")
    table(
        ["指标", "KPI", "值", "分子/分母"],
        [
            [
                k.name_zh,
                k.name,
                _value(k),
                f"{k.numerator}/{k.denominator}" if k.denominator else "—",
            ]
            for k in report.kpis.kpis
        ],
        [40, 70, 25, 35],
    )
    heading("每日新开工单 Tickets opened per day")
    pdf.image(io.BytesIO(_chart(report)), w=170)
    heading("反馈热点 Hotspots")
    table(
        ["科室", "类别", "工单", "环比"],
        [
            [h.department, h.category, str(h.count), "" if h.change is None else f"{h.change:+d}"]
            for h in report.feedback.hotspots
        ]
        or [["—", "—", "0", ""]],
        [50, 60, 30, 30],
    )
    heading("工作量 Staff workload")
    table(
        ["人员", "新开", "已解决", "超时"],
        [[w.assignee, str(w.opened), str(w.resolved), str(w.breached)] for w in report.workload]
        or [["—", "0", "0", "0"]],
        [70, 30, 30, 30],
    )
    return bytes(pdf.output())


def monthly_html(report: MonthlyReport) -> str:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
    )
    return environment.get_template("monthly.html.j2").render(
        report=report, title=_title(report), value=_value
    )
