"""A patient's printable health report and stage summary (打印健康报告, 健康阶段总结).

For one patient and a period, in zh-CN or en: who they are, how far each follow-up journey
has come, the trend of every indicator read in the period (with a chart), the alerts and how
each was handled, advice chosen by their tags and pathways (``templates/reports/advice.yaml``)
and the next steps. Rendered as HTML (jinja2) and as PDF (fpdf2) with the Noto Sans CJK SC
font from PyPI (``mplfonts``) embedded, so nothing but pip is needed to print Chinese.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
from pathlib import Path
from typing import Literal

import jinja2
import matplotlib
import mplfonts
import yaml
from fpdf import FPDF
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session, col, select

from suifang.core.errors import NotFoundError, ValidationFailed
from suifang.core.models import Observation, Ticket
from suifang.core.pathway_checks import load_indicators
from suifang.core.pathways import LocalizedText, resolve_plan
from suifang.core.runtime import Runtime
from suifang.workflows.health_record import HealthRecord, JourneyEntry, health_record
from suifang.workflows.journey_core import preview_schedule
from suifang.workflows.tags import tag_rules
from suifang.workflows.trends import Trend, date_axis, indicator_trend, trend_svg

__all__ = ["PatientReport", "build_patient_report", "report_html", "report_pdf"]

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "reports"
CJK_FONT = Path(mplfonts.__file__).resolve().parent / "fonts" / "NotoSansCJKsc-Regular.otf"
AdviceKind = Literal["diet", "exercise", "mental_health"]

_TEXT = {
    "zh-CN": {
        "title": "健康阶段总结",
        "period": "报告期间",
        "patient": "基本信息",
        "name": "姓名",
        "sex": "性别",
        "age": "年龄",
        "tags": "标签",
        "journeys": "随访进展",
        "trends": "指标趋势",
        "alerts": "预警及处理",
        "advice": "健康建议",
        "next": "下一步",
        "none": "无",
        "readings": "次读数",
        "controlled": "达标",
        "not_controlled": "未达标",
        "diet": "饮食",
        "exercise": "运动",
        "mental_health": "心理健康",
        "answered": "已回复",
        "generated": "生成时间",
        "open_ticket": "待处理工单",
        "next_touchpoint": "下次随访",
        "sexes": {"female": "女", "male": "男", "other": "其他", "unknown": "未知"},
        "direction": {
            "rising": "上升",
            "falling": "下降",
            "stable": "平稳",
            "too_few_readings": "读数不足",
        },
    },
    "en": {
        "title": "Health summary",
        "period": "Period",
        "patient": "Patient",
        "name": "Name",
        "sex": "Sex",
        "age": "Age",
        "tags": "Tags",
        "journeys": "Follow-up progress",
        "trends": "Indicator trends",
        "alerts": "Alerts and how they were handled",
        "advice": "Advice",
        "next": "Next steps",
        "none": "None",
        "readings": "readings",
        "controlled": "controlled",
        "not_controlled": "not controlled",
        "diet": "Diet",
        "exercise": "Exercise",
        "mental_health": "Mental health",
        "answered": "answered",
        "generated": "Generated",
        "open_ticket": "Open ticket",
        "next_touchpoint": "Next follow-up",
        "sexes": {"female": "female", "male": "male", "other": "other", "unknown": "unknown"},
        "direction": {
            "rising": "rising",
            "falling": "falling",
            "stable": "stable",
            "too_few_readings": "too few readings",
        },
    },
}


class AdviceWhen(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tags: list[str] | None = None
    pathways: list[str] | None = None
    general: bool | None = None


class AdviceEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    when: AdviceWhen
    kind: AdviceKind
    text: LocalizedText


class _AdviceFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1]
    advice: list[AdviceEntry]


class ReportAdvice(BaseModel):
    kind: AdviceKind
    text: str


class PatientReport(BaseModel):
    locale: str
    start: dt.date
    end: dt.date
    generated_at: dt.datetime
    record: HealthRecord = Field(description="Only what falls in the period, but for the patient.")
    tags: list[str] = Field(description="The patient's tags, by name in the report's language.")
    trends: list[Trend]
    advice: list[ReportAdvice]
    next_steps: list[str]
    pathway_names: dict[str, str] = Field(
        default_factory=dict, description="Each journey's pathway by its name in the language."
    )
    sex: str = Field("-", description="The patient's sex in the report's language.")


_JOURNEY_STATUS = {
    "zh-CN": {
        "pending": "待开始",
        "active": "进行中",
        "paused": "已暂停",
        "completed": "已完成",
        "lost": "失访",
        "stopped": "已停止",
    }
}


@functools.lru_cache(maxsize=1)
def _advice() -> list[AdviceEntry]:
    data = yaml.safe_load((TEMPLATES / "advice.yaml").read_text(encoding="utf-8"))
    return _AdviceFile.model_validate(data).advice


def build_patient_report(
    runtime: Runtime,
    session: Session,
    patient_id: int,
    *,
    start: dt.date,
    end: dt.date,
    locale: str = "zh-CN",
    now: dt.datetime | None = None,
) -> PatientReport:
    """The report's content for ``start``–``end`` (both included, UTC days)."""
    if start > end:
        raise ValidationFailed(f"from ({start}) is after to ({end})")
    if locale not in _TEXT:
        raise ValidationFailed(f"locale: {locale!r} is not zh-CN or en")
    indicators = load_indicators(runtime.settings.indicators_file)
    now = now or dt.datetime.now(dt.UTC)
    lo = dt.datetime.combine(start, dt.time(), dt.UTC)
    hi = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.UTC)
    record = health_record(session, patient_id, locale=locale)
    period = _within_period(record, lo, hi)
    read = session.exec(
        select(Observation.indicator)
        .where(
            Observation.patient_id == patient_id,
            col(Observation.observed_at) >= lo,
            col(Observation.observed_at) < hi,
        )
        .distinct()
    ).all()
    trends = [
        indicator_trend(session, patient_id, name, indicators, locale=locale, since=lo, until=hi)
        for name in indicators  # the registry's order: systolic before diastolic
        if name in set(read)
    ]
    tags = {t.tag for t in record.tags}
    rules = tag_rules(runtime.settings.tags_file, runtime.settings.indicators_file)
    tag_names = [rules[t].name.get(locale) if t in rules else t for t in sorted(tags)]
    pathways = {j.pathway_id for j in record.journeys}
    advice = [
        ReportAdvice(kind=entry.kind, text=entry.text.get(locale))
        for entry in _advice()
        if entry.when.general
        or tags & set(entry.when.tags or [])
        or pathways & set(entry.when.pathways or [])
    ]
    text = _TEXT[locale]
    open_tickets = session.exec(
        select(Ticket).where(
            Ticket.patient_id == patient_id, col(Ticket.status).not_in(["resolved", "closed"])
        )
    ).all()
    names = {pid: _pathway_name(runtime, pid, locale) for pid in pathways}
    next_steps = [
        f"{text['open_ticket']} #{t.id} ({t.category}, {t.tier}, {t.status})" for t in open_tickets
    ]
    for journey in record.journeys:
        if journey.status == "active" and (due := _next_touchpoint(runtime, record, journey, now)):
            next_steps.append(
                f"{text['next_touchpoint']}: {names[journey.pathway_id]} {due:%Y-%m-%d}"
            )
    return PatientReport(
        locale=locale,
        start=start,
        end=end,
        generated_at=now,
        record=period,
        tags=tag_names,
        trends=trends,
        advice=advice,
        next_steps=next_steps,
        pathway_names=names,
        sex=text["sexes"].get(record.patient.sex or "", record.patient.sex or "-"),
    )


def _pathway_name(runtime: Runtime, pathway_id: str, locale: str) -> str:
    try:
        return runtime.catalog.get(pathway_id).name.get(locale)
    except NotFoundError:
        return pathway_id


def _next_touchpoint(
    runtime: Runtime, record: HealthRecord, journey: JourneyEntry, now: dt.datetime
) -> dt.datetime | None:
    """When the journey's next touchpoint is due, from its plan (none recorded yet after now)."""
    discharged = {e.id: e.discharged_at for e in record.encounters}.get(journey.encounter_id)
    try:
        template = runtime.catalog.get(journey.pathway_id, journey.pathway_version)
    except NotFoundError:
        return None
    if discharged is None:
        return None
    plan = resolve_plan(template, journey.risk_tier, journey.groups)
    done = {t.key for t in journey.touchpoints}
    schedule = preview_schedule(plan, discharged, timezone=record.patient.timezone)
    return next((due for key, _, due in schedule if due > now and key not in done), None)


def _within_period(record: HealthRecord, lo: dt.datetime, hi: dt.datetime) -> HealthRecord:
    def inside(at: dt.datetime) -> bool:
        return lo <= at < hi

    return record.model_copy(
        update={
            "observations": [o for o in record.observations if inside(o.observed_at)],
            "alerts": [a for a in record.alerts if inside(a.created_at)],
            "answers": [a for a in record.answers if inside(a.received_at)],
            "messages": [m for m in record.messages if inside(m.created_at)],
            "tickets": [t for t in record.tickets if inside(t.opened_at)],
        }
    )


# --------------------------------------------------------------------------- charts


@functools.lru_cache(maxsize=1)
def _font() -> FontProperties:
    return FontProperties(fname=str(CJK_FONT))


def trend_png(trend: Trend, locale: str) -> bytes:
    """The trend as a PNG, its labels in Noto Sans CJK SC (the PDF has no viewer fonts)."""
    font = _font()
    with matplotlib.rc_context({"axes.unicode_minus": False}):
        figure = Figure(figsize=(6.4, 2.6), dpi=130)
        axes = figure.subplots()
        if trend.control is not None:
            low, high = trend.control.target.band(trend.minimum, trend.maximum)
            axes.axhspan(low, high, color="#2e7d32", alpha=0.12)
        axes.plot(
            [p.at for p in trend.points],
            [p.value for p in trend.points],
            marker="o",
            color="#1565c0",
        )
        outside = [p for p in trend.points if p.in_target is False]
        axes.scatter([p.at for p in outside], [p.value for p in outside], color="#c62828", zorder=3)
        title = f"{trend.name} ({trend.unit})" if trend.unit else trend.name
        axes.set_title(title, fontproperties=font)
        date_axis(axes, trend.points)
        axes.grid(alpha=0.3)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


# --------------------------------------------------------------------------- HTML and PDF


def _summary(trend: Trend, locale: str) -> str:
    text = _TEXT[locale]
    parts = [f"{trend.count} {text['readings']}", text["direction"][trend.direction]]
    if trend.latest is not None:
        parts.append(f"{trend.latest:g} {trend.unit}".strip())
    if trend.control is not None:
        state = text["controlled"] if trend.control.controlled else text["not_controlled"]
        parts.append(f"{trend.control.in_target_share:.0%} {state}")
    return ", ".join(parts)


def report_html(report: PatientReport) -> str:
    """The report as one self-contained HTML page (charts inline as SVG)."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
    )
    return environment.get_template("patient.html.j2").render(
        report=report,
        text=_TEXT[report.locale],
        statuses=_JOURNEY_STATUS.get(report.locale, {}),
        charts=[
            (t, _summary(t, report.locale), trend_svg(t, locale=report.locale))
            for t in report.trends
        ],
    )


class _Pdf(FPDF):
    def __init__(self, footer_text: str) -> None:
        super().__init__(format="A4")
        self.footer_text = footer_text
        self.add_font("cjk", "", str(CJK_FONT))
        self.set_auto_page_break(auto=True, margin=15)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("cjk", size=8)
        self.cell(0, 8, f"{self.footer_text}  {self.page_no()}", align="C")


def report_pdf(report: PatientReport) -> bytes:
    """The report as a PDF with the CJK font embedded (subset) and the charts as images."""
    text, locale = _TEXT[report.locale], report.locale
    patient = report.record.patient
    pdf = _Pdf(f"{text['generated']} {report.generated_at:%Y-%m-%d %H:%M} UTC")
    pdf.add_page()
    pdf.set_font("cjk", size=18)
    pdf.cell(0, 12, text["title"], new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("cjk", size=10)
    pdf.cell(
        0, 7, f"{text['period']}: {report.start} – {report.end}", new_x="LMARGIN", new_y="NEXT"
    )

    def heading(title: str) -> None:
        pdf.ln(3)
        pdf.set_font("cjk", size=13)
        pdf.cell(0, 9, title, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("cjk", size=10)

    def line(value: str) -> None:
        pdf.multi_cell(0, 6, value, new_x="LMARGIN", new_y="NEXT")

    heading(text["patient"])
    line(
        f"{text['name']}: {patient.name}    {text['sex']}: {report.sex}    "
        f"{text['age']}: {patient.age if patient.age is not None else '-'}"
    )
    line(f"{text['tags']}: {', '.join(report.tags) or text['none']}")

    heading(text["journeys"])
    for journey in report.record.journeys or []:
        answered = sum(1 for t in journey.touchpoints if t.answered_at)
        progress = f"{answered}/{len(journey.touchpoints)} {text['answered']}"
        line(
            f"{report.pathway_names.get(journey.pathway_id, journey.pathway_id)} "
            f"v{journey.pathway_version} · "
            f"{_JOURNEY_STATUS.get(locale, {}).get(journey.status, journey.status)} · "
            f"{journey.enrolled_at:%Y-%m-%d} · {progress}"
        )
    if not report.record.journeys:
        line(text["none"])

    heading(text["trends"])
    for trend in report.trends:
        line(f"{trend.name}: {_summary(trend, locale)}")
        pdf.image(io.BytesIO(trend_png(trend, locale)), w=160)
    if not report.trends:
        line(text["none"])

    heading(text["alerts"])
    for alert in report.record.alerts:
        line(f"{alert.created_at:%Y-%m-%d} {alert.tier} {alert.summary} → {alert.handled}")
    if not report.record.alerts:
        line(text["none"])

    heading(text["advice"])
    for advice in report.advice:
        line(f"{text[advice.kind]}: {advice.text}")

    heading(text["next"])
    for step in report.next_steps or [text["none"]]:
        line(step)
    return bytes(pdf.output())
