"""Follow-up KPIs per period, department and pathway: what hospitals are scored on.

Every KPI carries its value, numerator and denominator (a report shows "92.0% (230/250)") and a
``definition``. ``docs/kpis.md`` explains them with examples; in short:

Period
    ``start`` and ``end`` are calendar dates, both included, in the hospital's timezone
    (``Asia/Shanghai`` by default): 1–30 Nov is [1 Nov 00:00, 1 Dec 00:00) local time. Each KPI
    says which timestamp must fall in the period. ``as_of`` (default: now) is when the report
    is made: outcomes not known yet at ``as_of`` are left out of numerator and denominator and
    counted as ``pending``.

Filters
    ``department`` and the caller's scope ``departments`` (None = all) apply to the journey's
    department (enrollment; for discharges, the encounter) and to the ticket's current
    department (its queue). ``pathway`` applies to the enrollment; tickets match through their
    ``enrollment_id`` (tickets without a journey drop out when a pathway is given).

KPIs
    follow_up_coverage (随访覆盖率)
        Enrollments reached by at least one touchpoint due in the period (and by ``as_of``) —
        status sent, answered or missed — ÷ enrollments with a touchpoint due in the period.
        Pending: enrollments whose only due touchpoints are still waiting to go out (quiet
        hours, a send in flight). Touchpoints that fell due before the patient was enrolled
        are no opportunity and are ignored.
    discharges_enrolled (出院患者入组率)
        Encounters discharged in the period with at least one enrollment (in ``pathway``, if
        given) ÷ encounters discharged in the period (department = the encounter's).
    response_rate (应答率)
        Touchpoints answered ÷ touchpoints whose answer window has closed (answered + missed),
        due in the period. Informational touchpoints and questions still waiting for an answer
        (status sent) are not counted; a late answer to a missed touchpoint does not count.
    lost_to_follow_up_rate (失访率)
        Enrollments that ended as ``lost`` ÷ enrollments that ended in the period (completed,
        lost or stopped; ``ended_at`` in the period).
    alert_rate, alert_rate_l1/l2/l3 (预警率)
        Alerts raised in the period (``created_at``) per 100 touchpoints answered in the period
        (``answered_at``), overall and by tier.
    first_response_sla / resolution_sla (首次响应/解决时限达标率)
        Tickets opened in the period and routed to a department (L1 automatic answers start no
        SLA clock) whose first response (resolution) was made without breaching its target ÷
        those whose outcome is known: met, or breached (a recorded breach, or a clock still
        running past its due time). Tickets whose clock is still within its target, paused
        (waiting on the patient) or not started are ``pending``; a reopened ticket's
        resolution is pending again until it is resolved once more. The ticket read model
        clears ``first_response_due``/``resolution_due`` once a clock is met, so "due in the
        period" cannot be reconstructed: the period rule is the ticket's ``opened_at``.
    time_to_first_response_median / _p90 (首次响应时长)
        Minutes from ``opened_at`` to ``first_response_at`` (wall clock, not business hours)
        over the tickets of the first-response SLA KPI that have a first response (met or
        breached): the median and the 90th percentile (nearest rank). ``denominator`` is how
        many tickets were measured.
    tickets_opened (工单量)
        Tickets opened in the period; ``tickets_by_category`` and ``tickets_by_department``
        split them (``unrouted``: no department yet, e.g. answered automatically at L1).
    readmission_30d (30天再入院率)
        Discharges (encounters) in the period with an enrollment, whose 30-day window has
        closed by ``as_of``, that have an enrollment with ``readmitted_at`` within 30 days of
        discharge ÷ those discharges. Discharges less than 30 days before ``as_of`` are pending.
        Staff record a readmission with ``suifang journeys readmitted ID [--at TIME]`` or
        ``POST /journeys/{id}/readmitted``, also after the journey has ended.
    satisfaction_mean / satisfaction_rate (满意度 / 满意率)
        Tickets scored in the period (time of their latest satisfaction score, else
        ``closed_at``): the mean score (numerator: the sum of the scores; denominator: how
        many tickets) and the share scored 4 or 5.

The package, by concept: :mod:`~suifang.workflows.kpis.definitions` (what each KPI is),
:mod:`~suifang.workflows.kpis.formulas` (each formula once, shared with the workload
simulation), :mod:`~suifang.workflows.kpis.queries` (what the database counts) and
:mod:`~suifang.workflows.kpis.report` (the report for a period).
"""

from __future__ import annotations

from suifang.workflows.kpis.definitions import KPI_DEFINITIONS, Kpi, KpiDefinition
from suifang.workflows.kpis.report import KpiReport, compute_kpis, filter_problems, period_window

__all__ = [
    "KPI_DEFINITIONS",
    "Kpi",
    "KpiDefinition",
    "KpiReport",
    "compute_kpis",
    "filter_problems",
    "period_window",
]
