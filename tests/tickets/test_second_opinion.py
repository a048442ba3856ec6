"""The learned second opinion raises what the lexicon found to an emergency when it is sure,
and never lowers anything: trained here on a handful of examples, used by the real triage."""

from __future__ import annotations

from pathlib import Path

import pytest

from suifang.core.enums import Priority, TicketSource, Tier
from suifang.core.errors import ValidationFailed
from suifang.core.triage import TriageRequest, TriageResult
from suifang.tickets.classifier import default_classifier
from suifang.tickets.danger import default_detector
from suifang.tickets.intent import default_intent_reader
from suifang.tickets.knowledge import default_knowledge_base
from suifang.tickets.second_opinion import Example, SecondOpinion, load_examples
from suifang.tickets.triage import Triager

# The model learns that "天旋地转站不住" is an emergency: the lexicon alone reads it as
# near-fainting, which is urgent (a clinician within hours), not an emergency.
EMERGENCIES = [f"老人天旋地转站不住了{suffix}" for suffix in ("", "，快来人", "，怎么办", "！")]
OTHERS = [
    "伤口有点痒",
    "请问复查要空腹吗",
    "护士态度很好",
    "血压一百三",
    "睡得不太好",
    "想问下拿药",
]


def triager(examples: list[Example] | None = None) -> Triager:
    model = SecondOpinion.train(
        examples
        or [Example(text, True) for text in EMERGENCIES] + [Example(t, False) for t in OTHERS]
    )
    return Triager(
        default_classifier(),
        default_detector(),
        default_intent_reader(),
        default_knowledge_base(),
        model,
    )


def triage(text: str, judge: Triager) -> TriageResult:
    return judge.classify(TriageRequest(text=text, source=TicketSource.PATIENT_MESSAGE))


def test_an_urgent_finding_the_model_is_sure_of_becomes_an_emergency() -> None:
    text = "我妈天旋地转站不住了"
    assert default_detector().assess(text).level == "urgent"
    result = triage(text, triager())
    assert result.urgency is Priority.EMERGENCY
    assert result.suggested_tier is Tier.L3
    assert result.clinical


def test_the_model_never_lowers_and_stays_silent_on_denials_and_readings() -> None:
    judge = triager()
    # Denied: every danger word the lexicon saw is "not now".
    assert triage("昨天天旋地转站不住，现在已经好了，没有头晕了", judge).urgency is not (
        Priority.EMERGENCY
    )
    # A lexicon emergency stays one whatever the model thinks.
    assert triage("胸口压得喘不上气，一直冒冷汗", judge).urgency is Priority.EMERGENCY
    # A message the model has never seen anything like is not raised.
    assert triage("请问医保报销要带什么材料", judge).urgency is Priority.ROUTINE


def test_bad_example_files_are_named_by_line(tmp_path: Path) -> None:
    path = tmp_path / "emergency_examples.csv"
    path.write_text("text,language,emergency\n胸痛,zh-CN,maybe\n", encoding="utf-8")
    with pytest.raises(ValidationFailed, match=r"emergency_examples.csv:2: emergency must be yes"):
        load_examples(path)
