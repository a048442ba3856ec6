"""Moving a running journey to a new version of its pathway, at its current position.

``suifang pathways migrate ID --from 1 --to 2`` sends each running journey the new version's
plan (resolved for the patient's tier and groups) through the workflow's ``migrate`` update.
Pure, like the journey core: touchpoints already done stay done (their keys, answers and
points are history); a touchpoint the new version adds is scheduled from its first occurrence
still ahead (one whose day has passed is not sent late); a touchpoint it removes is cancelled,
an open one included; the ones both versions have keep their place.
"""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from suifang.core.pathways import JourneyPlan
from suifang.workflows.journey_commands import SendTouchpoint
from suifang.workflows.journey_core import JourneyCore

__all__ = ["MigrateEvent", "MigrationReport", "migrate_core"]

_MAX_SKIPPED_OCCURRENCES = 10_000


class MigrateEvent(BaseModel):
    plan: JourneyPlan


class MigrationReport(BaseModel):
    """What a migration changes for one journey (the same for a dry run)."""

    enrollment_id: int
    from_version: int
    to_version: int
    done: list[str] = Field(default_factory=list, description="Touchpoints already sent: kept.")
    added: list[str] = Field(default_factory=list, description="New, scheduled (key@day).")
    passed: list[str] = Field(
        default_factory=list, description="New, but their day has passed: not sent."
    )
    removed: list[str] = Field(default_factory=list, description="No longer in the plan.")
    cancelled: list[str] = Field(default_factory=list, description="Open ones removed.")


def migrate_core(
    core: JourneyCore, plan: JourneyPlan, now: dt.datetime
) -> tuple[JourneyCore, MigrationReport]:
    """A core on ``plan`` at ``core``'s position, and what changed. ``core`` is untouched."""
    state = core.state.model_copy(deep=True)
    old = {t.id for t in core.plan.touchpoints}
    new = {t.id: t for t in plan.touchpoints}
    removed = [tid for tid in old if tid not in new]
    cancelled = [o.key for o in state.open if o.touchpoint_id in removed]
    state.open = [o for o in state.open if o.touchpoint_id not in removed]
    for touchpoint_id in removed:
        state.next_occurrence.pop(touchpoint_id, None)
    migrated = JourneyCore(core.setup.model_copy(update={"plan": plan}), state)
    added, passed = [], []
    for touchpoint in plan.touchpoints:
        if touchpoint.id in old:
            continue
        occurrence = 0
        while occurrence < _MAX_SKIPPED_OCCURRENCES:
            day = migrated._occurrence_day(touchpoint, occurrence)
            if day is None or migrated._day_due(touchpoint, day) >= now:
                break
            passed.append(migrated.occurrence_key(touchpoint, occurrence))
            occurrence += 1
        state.next_occurrence[touchpoint.id] = occurrence
        day = migrated._occurrence_day(touchpoint, occurrence)
        if day is not None:
            added.append(f"{migrated.occurrence_key(touchpoint, occurrence)}@day{day}")
    # What was decided but not yet done carries over, except sends of removed touchpoints.
    migrated._pending = [
        effect
        for effect in core._pending
        if not (isinstance(effect, SendTouchpoint) and effect.touchpoint_id in removed)
    ]
    report = MigrationReport(
        enrollment_id=core.setup.enrollment_id,
        from_version=core.plan.pathway_version,
        to_version=plan.pathway_version,
        done=[sent.key for sent in state.recent],
        added=added,
        passed=passed,
        removed=sorted(removed),
        cancelled=cancelled,
    )
    return migrated, report
