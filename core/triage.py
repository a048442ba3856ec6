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
    """What ``suifang_triage`` is asked to judge: one message, with what is known about it."""

    text: str = Field(description="What the patient wrote (or the alert summary).")
    locale: str | None = Field(None, description="zh-CN or en if known; otherwise detected.")
    source: TicketSource = TicketSource.PATIENT_MESSAGE
    """Where it came from: a patient's message, a questionnaire alert, staff…"""
    pathway_id: str | None = Field(
        None, description="The patient's pathway: it gives context (after surgery, diabetic)."
    )
    discharge_department: str | None = None
    """The department that discharged the patient (clinical tickets go to it)."""


class KnowledgeAnswer(BaseModel):
    """A routine answer from the knowledge base the L1 tier may send on its own."""

    id: str
    """The knowledge-base topic's id, e.g. ``bathing-after-stent``."""
    question: str
    """The topic's question, in the patient's language."""
    answer: str = Field(description="In the patient's language.")
    confidence: float = Field(ge=0, le=1)
    """How sure the match is (0–1); below the setting's floor, the answer is not sent."""


class TriageResult(BaseModel):
    """A judgement of one message: the first ``suifang_triage`` plugin to return one wins."""

    category: str = Field(description="A routing-table category, e.g. medication, parking.")
    urgency: Priority
    """How soon: ``emergency``, ``urgent`` or ``routine``."""
    confidence: float = Field(ge=0, le=1)
    """How sure the judgement is (0–1)."""
    language: str = "zh-CN"
    """The message's language (``zh-CN`` or ``en``): replies are rendered in it."""
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
    """What the patient wants (report, question, complaint, suggestion, praise, nothing)."""
    suggested_tier: Tier = Tier.L2
    """Who should answer: L1 automatic, L2 specialist nurse, L3 doctor."""
    clinical: bool = Field(
        True, description="A health matter: 24/7 clinical clock, the discharge department."
    )
    knowledge_answer: KnowledgeAnswer | None = None
    """A routine answer L1 may send on its own, if the knowledge base has one."""
    sources: list[str] = Field(
        default_factory=list, description="Who judged it: the local triage, an AI plugin…"
    )


class RoutingRequest(BaseModel):
    """A ticket to route: ``suifang_route_ticket`` returns the department code that owns it."""

    category: str
    """The triage category, e.g. ``medication``, ``parking``, ``billing``."""
    clinical: bool
    """A health matter (the discharge department owns it by default)."""
    source: TicketSource
    """Where the ticket came from."""
    tier: Tier
    """The tier it is at (L1, L2, L3)."""
    priority: Priority
    """Its urgency."""
    discharge_department: str | None = None
    """The department that discharged the patient."""
    pathway_id: str | None = None
    """The patient's pathway."""
    patient_tags: list[str] = Field(default_factory=list)
    """The patient's auto-tags now (``templates/tags.yaml``: e.g. ``elderly``,
    ``bp_uncontrolled``), for plugins that route by them."""
