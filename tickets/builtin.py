"""The ticket domain's built-in plugin: the hook implementations suifang ships for tickets.

Registered like any third-party plugin. ``trylast`` makes each one the fallback: a hospital's
own triage plugin, if installed, answers first.
"""

from __future__ import annotations

from suifang.core.hooks import hookimpl
from suifang.core.triage import TriageRequest, TriageResult
from suifang.tickets.assistant import default_assistant
from suifang.tickets.triage import classify


@hookimpl(trylast=True)
def suifang_triage(request: TriageRequest) -> TriageResult:
    """The local danger lexicon, intent cues, category model and knowledge base (see triage),
    then — when ``SUIFANG_AI_TRIAGE_ENABLED`` — the language model's second opinion, which can
    only raise the urgency and only answer from the knowledge base (see assistant)."""
    local = classify(request)
    assistant = default_assistant()
    return local if assistant is None else assistant.refine(request, local)
