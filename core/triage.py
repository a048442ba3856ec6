"""Contracts of the triage and routing hooks: what a ticket's text is about, and who owns it."""

from __future__ import annotations

from pydantic import BaseModel, Field

from suifang.core.enums import Priority, TicketSource, Tier

__all__ = ["KnowledgeAnswer", "RoutingRequest", "TriageRequest", "TriageResult"]


class TriageRequest(BaseModel):
    text: str = Field(description="What the patient wrote (or the alert summary).")
    locale: str | None = Field(None, description="zh-CN or en if known; otherwise detected.")
    source: TicketSource = TicketSource.PATIENT_MESSAGE
    pathway_id: str | None = None
    discharge_department: str | None = None


class KnowledgeAnswer(BaseModel):
    """A routine answer from the knowledge base the L1 tier may send on its own."""

    id: str
    question: str
    answer: str = Field(description="In the patient's language.")
    confidence: float = Field(ge=0, le=1)


class TriageResult(BaseModel):
    category: str = Field(description="A routing-table category, e.g. medication, parking.")
    urgency: Priority
    confidence: float = Field(ge=0, le=1)
    language: str = "zh-CN"
    red_flags: list[str] = Field(
        default_factory=list, description="Red-flag symptoms found (→ L3/emergency at once)."
    )
    suggested_tier: Tier = Tier.L2
    clinical: bool = Field(True, description="Clinical matters go to the discharge department.")
    knowledge_answer: KnowledgeAnswer | None = None


class RoutingRequest(BaseModel):
    category: str
    clinical: bool
    source: TicketSource
    tier: Tier
    priority: Priority
    discharge_department: str | None = None
    pathway_id: str | None = None
