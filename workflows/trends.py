"""Indicator trends over the years (历年指标趋势分析): a patient's readings of one indicator, its
reference range, the direction it is moving and whether it is under control.

Targets come from the indicator registry (``templates/indicators.yaml``: ``target`` and
``controlled_share``): e.g. systolic BP is controlled when at least 70 % of readings are below
140. Charts are SVG drawn by matplotlib, their text left as text so any viewer's CJK font
renders the Chinese labels.
"""

from __future__ import annotations

import datetime as dt
import io
import statistics
import warnings
from typing import Literal

import matplotlib
import matplotlib.dates as mdates
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from pydantic import BaseModel, Field
from sqlmodel import Session, col, select

from suifang.core.errors import NotFoundError, ValidationFailed
from suifang.core.models import Observation, Patient
from suifang.core.pathway_checks import Indicator, IndicatorTarget

__all__ = ["Trend", "indicator_trend", "trend_svg"]

Direction = Literal["rising", "falling", "stable", "too_few_readings"]
#: A change over the whole span smaller than this share of the mean reads as stable.
STABLE_WITHIN = 0.05
MIN_POINTS_FOR_DIRECTION = 3


class TrendPoint(BaseModel):
    at: dt.datetime
    value: float
    in_target: bool | None = Field(description="None when the indicator has no target.")
    source: str


class Control(BaseModel):
    target: IndicatorTarget
    in_target_share: float = Field(description="Share of readings within the target (0–1).")
    controlled_share: float = Field(description="The share needed to call it controlled.")
    controlled: bool


class Trend(BaseModel):
    indicator: str
    name: str
    unit: str
    points: list[TrendPoint] = Field(description="Oldest first.")
    count: int
    latest: float | None
    mean: float | None
    minimum: float | None
    maximum: float | None
    direction: Direction
    change_per_30_days: float | None = Field(description="The least-squares slope, per 30 days.")
    control: Control | None = Field(description="None when the indicator has no target.")


def indicator_trend(
    session: Session,
    patient_id: int,
    indicator: str,
    registry: dict[str, Indicator],
    *,
    locale: str = "zh-CN",
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> Trend:
    """The patient's readings of ``indicator`` (between ``since`` and ``until``), analysed."""
    if indicator not in registry:
        known = ", ".join(sorted(registry))
        raise ValidationFailed(f"indicator: {indicator!r} is not a known indicator ({known})")
    if session.get(Patient, patient_id) is None:
        raise NotFoundError(f"patient {patient_id} not found")
    definition = registry[indicator]
    query = select(Observation).where(
        Observation.patient_id == patient_id, Observation.indicator == indicator
    )
    if since is not None:
        query = query.where(col(Observation.observed_at) >= since)
    if until is not None:
        query = query.where(col(Observation.observed_at) < until)
    rows = session.exec(query.order_by(col(Observation.observed_at), col(Observation.id))).all()
    target = definition.target
    points = [
        TrendPoint(
            at=row.observed_at,
            value=row.value,
            in_target=target.holds(row.value) if target else None,
            source=row.source,
        )
        for row in rows
    ]
    values = [p.value for p in points]
    slope = _slope_per_day(points)
    return Trend(
        indicator=indicator,
        name=definition.name.get(locale) or definition.name.get("zh-CN") or indicator,
        unit=definition.unit,
        points=points,
        count=len(points),
        latest=values[-1] if values else None,
        mean=round(statistics.fmean(values), 3) if values else None,
        minimum=min(values) if values else None,
        maximum=max(values) if values else None,
        direction=_direction(points, slope),
        change_per_30_days=round(slope * 30, 3) if slope is not None else None,
        control=_control(points, target, definition.controlled_share) if target else None,
    )


def _slope_per_day(points: list[TrendPoint]) -> float | None:
    if len(points) < 2 or points[0].at == points[-1].at:
        return None
    start = points[0].at
    days = [(p.at - start).total_seconds() / 86400 for p in points]
    if len(set(days)) < 2:
        return None
    return statistics.linear_regression(days, [p.value for p in points]).slope


def _direction(points: list[TrendPoint], slope: float | None) -> Direction:
    if len(points) < MIN_POINTS_FOR_DIRECTION or slope is None:
        return "too_few_readings"
    span_days = (points[-1].at - points[0].at).total_seconds() / 86400
    mean = statistics.fmean(p.value for p in points)
    change = slope * span_days
    if abs(change) <= STABLE_WITHIN * max(abs(mean), 1e-9):
        return "stable"
    return "rising" if change > 0 else "falling"


def _control(points: list[TrendPoint], target: IndicatorTarget, needed: float) -> Control | None:
    if not points:
        return None
    share = sum(1 for p in points if p.in_target) / len(points)
    return Control(
        target=target,
        in_target_share=round(share, 3),
        controlled_share=needed,
        controlled=share >= needed,
    )


_LABELS = {
    "zh-CN": {"target": "目标范围", "date": "日期", "readings": "读数"},
    "en": {"target": "Target", "date": "Date", "readings": "Readings"},
}


def date_axis(axes: Axes, points: list[TrendPoint], *, long_format: str = "%Y-%m") -> None:
    """Dates on the x axis that a reader can place: a lone reading gets a month either side
    (matplotlib would spread one point over decades), and a span of more than half a year, or
    across New Year, shows the year."""
    if not points:
        return
    first, last = points[0].at, points[-1].at
    if first == last:
        axes.set_xlim(first - dt.timedelta(days=30), last + dt.timedelta(days=30))
    long = (last - first) > dt.timedelta(days=183) or first.year != last.year
    axes.xaxis.set_major_formatter(mdates.DateFormatter(long_format if long else "%m-%d"))
    axes.xaxis.set_major_locator(mdates.AutoDateLocator(maxticks=8))


def trend_svg(trend: Trend, *, locale: str = "zh-CN") -> str:
    """The trend as an SVG line chart, the target band shaded; text kept as SVG text.

    A ``Figure`` without pyplot: no global state, safe in the API's worker threads."""
    labels = _LABELS.get(locale, _LABELS["zh-CN"])
    with (
        matplotlib.rc_context({"svg.fonttype": "none", "font.family": "sans-serif"}),
        warnings.catch_warnings(),
    ):
        # The text stays text in the SVG, drawn by the viewer's CJK font; matplotlib only
        # measures it, and says so for each glyph its own font lacks.
        warnings.filterwarnings(
            "ignore", message="Glyph .* missing from font", category=UserWarning
        )
        figure = Figure(figsize=(7, 3.2), dpi=100)
        axes = figure.subplots()
        if trend.control is not None:
            low, high = trend.control.target.band(trend.minimum, trend.maximum)
            axes.axhspan(low, high, color="#2e7d32", alpha=0.12, label=labels["target"])
        if trend.points:
            axes.plot(
                [p.at for p in trend.points],
                [p.value for p in trend.points],
                marker="o",
                color="#1565c0",
                label=labels["readings"],
            )
            outside = [p for p in trend.points if p.in_target is False]
            axes.scatter(
                [p.at for p in outside], [p.value for p in outside], color="#c62828", zorder=3
            )
        axes.set_title(f"{trend.name} ({trend.unit})" if trend.unit else trend.name)
        axes.set_xlabel(labels["date"])
        date_axis(axes, trend.points, long_format="%Y-%m-%d")
        figure.autofmt_xdate()
        axes.grid(alpha=0.3)
        axes.legend(loc="best", fontsize="small")
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", bbox_inches="tight")
    return buffer.getvalue()
