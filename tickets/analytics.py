"""Feedback analytics (热点分析): what patients raise, by department and month, and how well it
is handled — for the cross-department coordination group and departments' reviews.

Hotspots count tickets by department, month (the hospital's calendar) and category, with the
change from the month before; top phrases come from what patients wrote (tickets opened by a
message or a complaint, segmented with jieba, function words left out); resolution figures
are the time to resolve (median and 90th percentile), the reopen rate and satisfaction after
resolution.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from zoneinfo import ZoneInfo

import jieba
from pydantic import BaseModel, Field
from sqlmodel import Session, col, select

from suifang.core.enums import TicketSource
from suifang.core.errors import ValidationFailed
from suifang.core.models import Ticket

__all__ = ["FeedbackReport", "feedback_report", "top_phrases"]

#: Tickets whose text a patient wrote (an alert's summary is the platform's own wording).
PATIENT_WORDED = (TicketSource.PATIENT_MESSAGE.value, TicketSource.COMPLAINT.value)
UNROUTED = "unrouted"
_STOPWORDS_FILE = Path(__file__).resolve().parent.parent / "templates" / "reports" / "stopwords.txt"
_WORD = re.compile(r"[\u4e00-\u9fffA-Za-z]")


class Hotspot(BaseModel):
    department: str
    month: str = Field(description="YYYY-MM, in the hospital's timezone.")
    category: str
    count: int
    change: int | None = Field(description="Against the month before (None for the first).")


class Phrase(BaseModel):
    phrase: str
    count: int


class Resolution(BaseModel):
    department: str
    opened: int
    resolved: int
    median_hours_to_resolve: float | None
    p90_hours_to_resolve: float | None
    reopen_rate: float | None = Field(
        description="Share of resolved tickets reopened at least once."
    )
    satisfaction_mean: float | None = Field(description="After resolution, 1–5.")
    satisfaction_responses: int


class FeedbackReport(BaseModel):
    start: dt.date
    end: dt.date
    timezone: str
    department: str | None
    tickets: int
    hotspots: list[Hotspot] = Field(description="Busiest first within each month.")
    top_phrases: dict[str, list[Phrase]] = Field(description="By department, commonest first.")
    resolution: list[Resolution]


@functools.lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    lines = _STOPWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(w.strip().lower() for w in lines if w.strip() and not w.startswith("#"))


@functools.lru_cache(maxsize=1)
def _segmenter() -> jieba.Tokenizer:
    jieba.setLogLevel(logging.WARNING)  # it announces loading its dictionary at INFO
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    return tokenizer


def top_phrases(texts: list[str], *, top: int = 10) -> list[Phrase]:
    """The commonest words of two characters or more, function words left out."""
    counts: Counter[str] = Counter()
    segmenter, stopwords = _segmenter(), _stopwords()
    for text in texts:
        seen = {
            word.lower()
            for word in segmenter.lcut(text)
            if len(word.strip()) >= 2 and _WORD.search(word) and word.lower() not in stopwords
        }
        counts.update(seen)  # a word once per ticket: one long complaint is not a hotspot
    return [Phrase(phrase=w, count=n) for w, n in counts.most_common(top)]


def feedback_report(
    session: Session,
    *,
    start: dt.date,
    end: dt.date,
    timezone: str,
    department: str | None = None,
    scope: list[str] | None = None,
    top: int = 10,
) -> FeedbackReport:
    """Hotspots, top phrases and resolution for tickets opened ``start``–``end`` (included)."""
    if start > end:
        raise ValidationFailed(f"the period starts ({start}) after it ends ({end})")
    zone = ZoneInfo(timezone)
    lo = dt.datetime.combine(start, dt.time(), zone).astimezone(dt.UTC)
    hi = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), zone).astimezone(dt.UTC)
    query = select(Ticket).where(col(Ticket.opened_at) >= lo, col(Ticket.opened_at) < hi)
    if department is not None:
        query = query.where(Ticket.department_code == department)
    if scope is not None:
        query = query.where(col(Ticket.department_code).in_(scope))
    tickets = session.exec(query.order_by(col(Ticket.opened_at))).all()

    counts: Counter[tuple[str, str, str]] = Counter()
    texts: dict[str, list[str]] = defaultdict(list)
    by_department: dict[str, list[Ticket]] = defaultdict(list)
    for ticket in tickets:
        where = ticket.department_code or UNROUTED
        month = ticket.opened_at.astimezone(zone).strftime("%Y-%m")
        counts[(where, month, ticket.category)] += 1
        by_department[where].append(ticket)
        if ticket.source in PATIENT_WORDED:
            texts[where].append(ticket.summary)
    return FeedbackReport(
        start=start,
        end=end,
        timezone=timezone,
        department=department,
        tickets=len(tickets),
        hotspots=_hotspots(counts),
        top_phrases={d: top_phrases(t, top=top) for d, t in sorted(texts.items())},
        resolution=[_resolution(d, rows) for d, rows in sorted(by_department.items())],
    )


def _hotspots(counts: Counter[tuple[str, str, str]]) -> list[Hotspot]:
    months = sorted({month for _, month, _ in counts})
    before = {month: months[i - 1] if i else None for i, month in enumerate(months)}
    found = [
        Hotspot(
            department=department,
            month=month,
            category=category,
            count=count,
            change=(
                count - counts.get((department, previous, category), 0)
                if (previous := before[month])
                else None
            ),
        )
        for (department, month, category), count in counts.items()
    ]
    found.sort(key=lambda h: (h.month, -h.count, h.department, h.category))
    return found


def _resolution(department: str, tickets: list[Ticket]) -> Resolution:
    resolved = [t for t in tickets if t.resolved_at is not None]
    hours = sorted((t.resolved_at - t.opened_at).total_seconds() / 3600 for t in resolved)  # type: ignore[operator]
    scores = [t.satisfaction for t in resolved if t.satisfaction is not None]
    return Resolution(
        department=department,
        opened=len(tickets),
        resolved=len(resolved),
        median_hours_to_resolve=round(statistics.median(hours), 2) if hours else None,
        p90_hours_to_resolve=round(hours[min(len(hours) - 1, int(0.9 * len(hours)))], 2)
        if hours
        else None,
        reopen_rate=round(sum(1 for t in resolved if t.reopen_count) / len(resolved), 3)
        if resolved
        else None,
        satisfaction_mean=round(statistics.fmean(scores), 2) if scores else None,
        satisfaction_responses=len(scores),
    )
