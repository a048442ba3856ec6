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
        return int(self.value[1])

    def bumped(self) -> Tier:
        return Tier(f"L{min(3, self.rank + 1)}")


class Priority(enum.StrEnum):
    ROUTINE = "routine"
    URGENT = "urgent"
    EMERGENCY = "emergency"

    @property
    def rank(self) -> int:
        return ["routine", "urgent", "emergency"].index(self.value)


class RiskTier(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


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
    CLINICAL_ALERT = "clinical_alert"
    PATIENT_MESSAGE = "patient_message"
    COMPLAINT = "complaint"
    LOW_SATISFACTION = "low_satisfaction"
    NON_RESPONDER = "non_responder"


class TicketStatus(enum.StrEnum):
    NEW = "new"
    TRIAGED = "triaged"
    ASSIGNED = "assigned"
    IN_PROGRESS = "in_progress"
    WAITING_ON_PATIENT = "waiting_on_patient"
    RESOLVED = "resolved"
    CLOSED = "closed"
    REOPENED = "reopened"
