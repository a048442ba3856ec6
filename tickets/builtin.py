"""The ticket domain's built-in plugin: the hook implementations suifang ships for tickets.

Registered like any third-party plugin. ``trylast`` makes each one the fallback: a hospital's
own triage plugin, if installed, answers first.
"""

from __future__ import annotations

from suifang.core.hooks import hookimpl
from suifang.core.triage import TriageRequest, TriageResult
from suifang.tickets.triage import classify


@hookimpl(trylast=True)
def suifang_triage(request: TriageRequest) -> TriageResult:
    """The local bilingual classifier, red-flag lexicon and knowledge base (see triage)."""
    return classify(request)
