"""What each KPI is: its name in both languages, unit, one-line and full definition, and the
:class:`Kpi` value a report or a forecast carries."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, computed_field

__all__ = ["KPI_DEFINITIONS", "Kpi", "KpiDefinition", "Unit"]

Unit = Literal["percent", "per_100", "minutes", "score", "count"]


class KpiDefinition(BaseModel):
    key: str
    name: str
    name_zh: str
    unit: Unit
    short: str = Field(description="Numerator / denominator in a few words, for tables.")
    definition: str


def _d(key: str, name: str, name_zh: str, unit: Unit, short: str, definition: str) -> KpiDefinition:
    return KpiDefinition(
        key=key, name=name, name_zh=name_zh, unit=unit, short=short, definition=definition
    )


_TIER_RATE = (
    "{tier} alerts raised in the period (created_at) per 100 touchpoints answered in the "
    "period (answered_at)."
)

#: Every KPI, in report order.
KPI_DEFINITIONS: dict[str, KpiDefinition] = {
    d.key: d
    for d in (
        _d(
            "follow_up_coverage",
            "Follow-up coverage",
            "随访覆盖率",
            "percent",
            "enrollments reached / enrollments with a touchpoint due",
            "Enrollments reached by at least one touchpoint due in the period (sent, answered "
            "or missed) ÷ enrollments with a touchpoint due in the period. Enrollments whose "
            "due touchpoints are all still waiting to go out are pending; touchpoints due "
            "before the patient was enrolled are ignored.",
        ),
        _d(
            "discharges_enrolled",
            "Discharges enrolled",
            "出院患者入组率",
            "percent",
            "discharges with an enrollment / discharges",
            "Encounters discharged in the period that have an enrollment (in the pathway, if "
            "one is given) ÷ encounters discharged in the period (encounter department).",
        ),
        _d(
            "response_rate",
            "Response rate",
            "应答率",
            "percent",
            "answered / answered + missed",
            "Touchpoints due in the period that were answered ÷ touchpoints due in the period "
            "that were sent, expected an answer and whose answer window closed (answered or "
            "missed). Informational touchpoints and questions still awaiting an answer are "
            "not counted.",
        ),
        _d(
            "lost_to_follow_up_rate",
            "Lost to follow-up",
            "失访率",
            "percent",
            "ended as lost / enrollments ended",
            "Enrollments that ended in the period (ended_at) with status lost ÷ enrollments "
            "that ended in the period (completed, lost or stopped).",
        ),
        _d(
            "alert_rate",
            "Alert rate",
            "预警率",
            "per_100",
            "alerts / 100 answered touchpoints",
            _TIER_RATE.format(tier="All"),
        ),
        _d(
            "alert_rate_l1",
            "Alert rate L1",
            "预警率(L1)",
            "per_100",
            "L1 alerts / 100 answered touchpoints",
            _TIER_RATE.format(tier="L1"),
        ),
        _d(
            "alert_rate_l2",
            "Alert rate L2",
            "预警率(L2)",
            "per_100",
            "L2 alerts / 100 answered touchpoints",
            _TIER_RATE.format(tier="L2"),
        ),
        _d(
            "alert_rate_l3",
            "Alert rate L3",
            "预警率(L3)",
            "per_100",
            "L3 alerts / 100 answered touchpoints",
            _TIER_RATE.format(tier="L3"),
        ),
        _d(
            "first_response_sla",
            "First response within SLA",
            "首次响应达标率",
            "percent",
            "met / met + breached",
            "Tickets opened in the period and routed to a department whose first response "
            "was made without breaching its target ÷ those whose outcome is known (met, or "
            "breached: a recorded breach or no response after the due time). Tickets still "
            "within their target, waiting on the patient or not routed yet are pending.",
        ),
        _d(
            "resolution_sla",
            "Resolution within SLA",
            "解决时限达标率",
            "percent",
            "met / met + breached",
            "Tickets opened in the period and routed to a department that were resolved "
            "without breaching the resolution target ÷ those whose outcome is known (resolved, "
            "or breached: a recorded breach or unresolved after the due time). Open tickets "
            "within their target or waiting on the patient, and reopened ones, are pending.",
        ),
        _d(
            "time_to_first_response_median",
            "Time to first response (median)",
            "首次响应时长(中位数)",
            "minutes",
            "median minutes, n = tickets",
            "Median of first_response_at − opened_at in minutes (wall clock) over the tickets "
            "of the first-response SLA KPI that have a first response (met or breached).",
        ),
        _d(
            "time_to_first_response_p90",
            "Time to first response (p90)",
            "首次响应时长(P90)",
            "minutes",
            "90th percentile minutes, n = tickets",
            "90th percentile (nearest rank) of first_response_at − opened_at in minutes (wall "
            "clock) over the tickets of the first-response SLA KPI that have a first response.",
        ),
        _d(
            "tickets_opened",
            "Tickets opened",
            "工单量",
            "count",
            "tickets opened",
            "Tickets opened in the period (opened_at), split by category and by department.",
        ),
        _d(
            "readmission_30d",
            "30-day readmission",
            "30天再入院率",
            "percent",
            "readmitted ≤30 d / discharges with 30 d elapsed",
            "Discharges (encounters) in the period with an enrollment and a closed 30-day "
            "window that have an enrollment with readmitted_at within 30 days of discharge ÷ "
            "those discharges. Discharges less than 30 days before the report time are pending.",
        ),
        _d(
            "satisfaction_mean",
            "Satisfaction (mean)",
            "平均满意度",
            "score",
            "mean score 1–5, n = tickets scored",
            "Mean satisfaction score (1–5) of tickets scored in the period (time of the latest "
            "score, else closed_at).",
        ),
        _d(
            "satisfaction_rate",
            "Satisfied",
            "满意率",
            "percent",
            "scored 4–5 / tickets scored",
            "Tickets scored 4 or 5 ÷ tickets scored in the period (time of the latest score, "
            "else closed_at).",
        ),
    )
}


class Kpi(BaseModel):
    key: str
    name: str
    name_zh: str
    unit: Unit
    value: float | None = Field(
        description="percent (0–100), per 100, minutes, mean score or count; None if no data."
    )
    numerator: int | None = Field(description="None for minutes; for a mean score, the sum.")
    denominator: int | None = Field(
        description="For minutes and mean scores: how many tickets were measured."
    )
    pending: int = Field(0, description="Left out: outcome not known yet at the report time.")
    short: str
    definition: str

    @property
    def value_text(self) -> str:
        """The value alone, e.g. ``92.0%``, ``12 min``, ``4.25``; ``—`` without data."""
        v = self.value
        if self.unit == "count":
            return str(self.numerator)
        if v is None:
            return "—"
        return {
            "percent": f"{v:.1f}%",
            "per_100": f"{v:.1f} per 100",
            "minutes": f"{v:.0f} min",
            "score": f"{v:.2f}",
        }[self.unit]

    @property
    def counts_text(self) -> str:
        """Numerator/denominator (``230/250``), or the sample size (``n=12``) of a median or
        mean (whose numerator, for a mean, is the sum)."""
        if self.unit == "count":
            return ""
        if self.numerator is None or self.unit == "score":
            return f"n={self.denominator}"
        return f"{self.numerator}/{self.denominator}"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def display(self) -> str:
        """The value as a report shows it, e.g. ``92.0% (230/250)``."""
        counts = self.counts_text
        return f"{self.value_text} ({counts})" if counts else self.value_text
