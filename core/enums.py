"""The shared vocabulary of journeys and tickets (stored as their string values)."""

from __future__ import annotations

import enum

__all__ = [
    "JourneyStatus",
    "Priority",
    "RiskTier",
    "TicketSource",
    "TicketStatus",
    "Tier",
    "TouchpointStatus",
]


class Tier(enum.StrEnum):
    """三级响应: who answers."""

    L1 = "L1"
    """Automated: classify, answer routine questions from the knowledge base, remind."""
    L2 = "L2"
    """Specialist (patient-management nurse): complex questions, side effects, support."""
    L3 = "L3"
    """Doctor: callback within 48 h, or hours when urgent."""

    @property
    def rank(self) -> int:
        """1, 2, 3: for comparing tiers."""
        return int(self.value[1])

    def bumped(self) -> Tier:
        """The tier above (L3 stays L3): where an escalation goes."""
        return Tier(f"L{min(3, self.rank + 1)}")


class Priority(enum.StrEnum):
    """How soon a ticket must be answered (its SLA clock)."""

    ROUTINE = "routine"
    """A reply within the department's routine SLA."""
    URGENT = "urgent"
    """A clinician within hours, on a 24/7 clock."""
    EMERGENCY = "emergency"
    """Call 120 / go to the emergency department now; a doctor is paged within minutes."""

    @property
    def rank(self) -> int:
        """0, 1, 2: for comparing priorities."""
        return ["routine", "urgent", "emergency"].index(self.value)


class RiskTier(enum.StrEnum):
    """Readmission risk: pathways' variants and follow-up intensity key on it."""

    LOW = "low"
    """Fewer touchpoints (a pathway's ``low`` variant)."""
    MEDIUM = "medium"
    """The pathway as written."""
    HIGH = "high"
    """Closer follow-up (a pathway's ``high`` variant)."""


class JourneyStatus(enum.StrEnum):
    PENDING = "pending"
    """Enrolled, workflow not started yet (Temporal was unreachable): retry intake."""
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    LOST = "lost"
    """失访: the configured number of touchpoints in a row went unanswered."""
    STOPPED = "stopped"
    """Readmitted, deceased, consent withdrawn or stopped by staff (see stop_reason)."""


class TouchpointStatus(enum.StrEnum):
    SCHEDULED = "scheduled"
    SENT = "sent"
    ANSWERED = "answered"
    MISSED = "missed"
    SKIPPED = "skipped"
    """Not sent: journey stopped, do-not-contact, or no channel could deliver."""


class TicketSource(enum.StrEnum):
    """What opened a ticket."""

    CLINICAL_ALERT = "clinical_alert"
    """A questionnaire answer or reading met a pathway's alert rule."""
    PATIENT_MESSAGE = "patient_message"
    """Something the patient (or family) wrote."""
    COMPLAINT = "complaint"
    """A complaint taken by staff or a feed."""
    LOW_SATISFACTION = "low_satisfaction"
    """A low satisfaction score."""
    NON_RESPONDER = "non_responder"
    """A patient who stopped answering (call them)."""


class TicketStatus(enum.StrEnum):
    NEW = "new"
    TRIAGED = "triaged"
    ASSIGNED = "assigned"
    IN_PROGRESS = "in_progress"
    WAITING_ON_PATIENT = "waiting_on_patient"
    RESOLVED = "resolved"
    CLOSED = "closed"
    REOPENED = "reopened"
