"""Contracts of the triage and routing hooks: what a ticket's text is about, and who owns it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from suifang.core.enums import Priority, TicketSource, Tier

__all__ = ["Intent", "KnowledgeAnswer", "RoutingRequest", "TriageRequest", "TriageResult"]

Intent = Literal["report", "question", "complaint", "suggestion", "praise", "nothing", "other"]
"""``nothing``: a reply with nothing to act on ("没有", "还好", "ok"): no ticket, no answer."""
"""What the patient wants: to report how they are (a symptom, a reading), to ask, to
complain, to suggest, to thank; ``other`` when none of these is clear."""


class TriageRequest(BaseModel):
    text: str = Field(description="What the patient wrote (or the alert summary).")
    locale: str | None = Field(None, description="zh-CN or en if known; otherwise detected.")
    source: TicketSource = TicketSource.PATIENT_MESSAGE
    pathway_id: str | None = Field(
        None, description="The patient's pathway: it gives context (after surgery, diabetic)."
    )
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
        default_factory=list, description="Emergency concepts found (→ L3, 120 advice, page)."
    )
    warning_signs: list[str] = Field(
        default_factory=list, description="Urgent concepts found (a clinician within hours)."
    )
    advice: list[str] = Field(
        default_factory=list,
        description="Emergency advice templates for the patient, most specific first.",
    )
    intent: Intent = "other"
    suggested_tier: Tier = Tier.L2
    clinical: bool = Field(
        True, description="A health matter: 24/7 clinical clock, the discharge department."
    )
    knowledge_answer: KnowledgeAnswer | None = None
    sources: list[str] = Field(
        default_factory=list, description="Who judged it: the local triage, an AI plugin…"
    )


class RoutingRequest(BaseModel):
    category: str
    clinical: bool
    source: TicketSource
    tier: Tier
    priority: Priority
    discharge_department: str | None = None
    pathway_id: str | None = None
