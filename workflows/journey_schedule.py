"""When a journey's things fall due: plan time, send windows, occurrences and greetings.

:class:`JourneySchedule` is the part of :class:`~suifang.workflows.journey_core.JourneyCore`
that maps the plan onto the calendar: it reads the setup, the state and the plan index the
core holds, and changes nothing but its memo tables and the greeting cursor.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from suifang.core.pathways import JourneyPlan, PlannedTouchpoint
from suifang.workflows.journey_commands import GreetingOccasion

if TYPE_CHECKING:  # the core's models; the core builds on this class
    from suifang.workflows.journey_core import JourneySetup, JourneyState

__all__ = ["DueCache", "JourneySchedule"]

UTC = dt.UTC
DueCache = dict[tuple[dt.time, int, dt.timedelta], dt.datetime]


class JourneySchedule:
    """Schedule arithmetic of a journey; :class:`JourneyCore` sets the attributes below."""

    setup: JourneySetup
    state: JourneyState
    plan: JourneyPlan
    zone: ZoneInfo
    origin: dt.datetime
    discharge_date: dt.date
    _due_cache: DueCache
    _window_cache: dict[dt.datetime, dt.datetime]
    _upcoming: dict[
        tuple[tuple[tuple[str, int], ...], dt.timedelta],
        tuple[dt.datetime, PlannedTouchpoint, int, int] | None,
    ]
    _today: tuple[dt.datetime, dt.date] | None

    # ----------------------------------------------------------------- time mapping

    def to_plan(self, real: dt.datetime) -> dt.datetime:
        scale = self.setup.time_scale
        return real if scale == 1 else self.origin + (real - self.origin) * scale

    def to_real(self, plan: dt.datetime) -> dt.datetime:
        scale = self.setup.time_scale
        return plan if scale == 1 else self.origin + (plan - self.origin) / scale

    def _real_duration(self, plan_duration: dt.timedelta) -> dt.timedelta:
        return plan_duration / self.setup.time_scale

    def in_window(self, real: dt.datetime) -> dt.datetime:
        """``real``, or the next opening of the send window if that is quiet hours."""
        # Memoised for UTC instants only: equal datetimes in other zones must keep their own
        # tzinfo in the result.
        if real.tzinfo is not UTC:
            return self._in_window(real)
        cached = self._window_cache.get(real)
        if cached is None:
            cached = self._window_cache[real] = self._in_window(real)
        return cached

    def _in_window(self, real: dt.datetime) -> dt.datetime:
        plan_local = self.to_plan(real).astimezone(self.zone)
        window = self.plan.send_window
        if window.contains(plan_local.time()):
            return real
        day = plan_local.date()
        if plan_local.time() >= window.end:
            day += dt.timedelta(days=1)
        opening = dt.datetime.combine(day, window.start, tzinfo=self.zone).astimezone(UTC)
        return self.to_real(opening)

    def _day_due(self, touchpoint: PlannedTouchpoint | None, day: int) -> dt.datetime:
        send_at = touchpoint.send_at if touchpoint else self.plan.send_window.start
        key = (send_at, day, self.state.shift)
        due = self._due_cache.get(key)
        if due is None:
            local = dt.datetime.combine(
                self.discharge_date + dt.timedelta(days=day), send_at, tzinfo=self.zone
            )
            plan_due = local.astimezone(UTC) + self.state.shift
            due = self._due_cache[key] = self.in_window(self.to_real(plan_due))
        return due

    def _occurrence_day(self, touchpoint: PlannedTouchpoint, occurrence: int) -> int | None:
        if touchpoint.every is None:
            return touchpoint.day if occurrence == 0 else None
        return touchpoint.every.day(occurrence)

    @staticmethod
    def occurrence_key(touchpoint: PlannedTouchpoint, occurrence: int) -> str:
        return touchpoint.id if touchpoint.every is None else f"{touchpoint.id}#{occurrence + 1}"

    # ----------------------------------------------------------------- what is next

    def _next_occurrence(self) -> tuple[dt.datetime, PlannedTouchpoint, int, int] | None:
        state = self.state
        key = (tuple(state.next_occurrence.items()), state.shift)
        if key in self._upcoming:
            best = self._upcoming[key]
        else:
            best = self._upcoming[key] = self._earliest_occurrence()
        if best is None:
            return None
        if state.override_next_due is not None:
            return self.in_window(state.override_next_due), best[1], best[2], best[3]
        return best

    def _earliest_occurrence(self) -> tuple[dt.datetime, PlannedTouchpoint, int, int] | None:
        best: tuple[dt.datetime, PlannedTouchpoint, int, int] | None = None
        next_occurrence = self.state.next_occurrence
        for touchpoint in self.plan.touchpoints:
            occurrence = next_occurrence[touchpoint.id]
            day = self._occurrence_day(touchpoint, occurrence)
            if day is None:
                continue
            due = self._day_due(touchpoint, day)
            # Strictly earlier only: on a tie the touchpoint first in the plan wins.
            if best is None or due < best[0]:
                best = (due, touchpoint, occurrence, day)
        return best

    def _next_greeting(
        self, horizon: dt.datetime | None, now: dt.datetime
    ) -> tuple[dt.datetime, GreetingOccasion] | None:
        if not self.plan.greetings:
            return None
        if self._today is not None and self._today[0] == now:
            today = self._today[1]
        else:
            today = self.to_plan(now).astimezone(self.zone).date()
            self._today = (now, today)
        greetings = self.setup.greetings
        while self.state.next_greeting < len(greetings):
            occasion = greetings[self.state.next_greeting]
            if occasion.date >= today:
                break
            self.state.next_greeting += 1  # a greeting for a day already gone is not sent late
        else:
            return None
        due = self._day_due(None, (occasion.date - self.discharge_date).days)
        if horizon is None or due > horizon:
            return None
        return due, occasion

    def _journey_end_bound(self, next_touchpoint_due: dt.datetime | None) -> dt.datetime | None:
        """Greetings are sent only while the journey still has touchpoints ahead or open."""
        # max() of the candidates, without building the list: the first of equals wins.
        bound = next_touchpoint_due or None
        for touchpoint in self.state.open:
            deadline = touchpoint.deadline
            if deadline and (bound is None or deadline > bound):
                bound = deadline
        return bound
