"""The feedback model decides whose complaint it is when the cues do not, and never touches
danger: trained on labelled feedback, used by the real triage."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest

from suifang.core.enums import Priority, TicketSource, Tier
from suifang.core.errors import ValidationFailed
from suifang.core.seed import default_routing
from suifang.core.triage import TriageRequest, TriageResult
from suifang.tickets.feedback_owner import (
    FeedbackOwner,
    OwnerExample,
    load_owner_examples,
    owner_label,
)
from suifang.tickets.triage import Triager, default_triager


def triage(text: str, judge: Triager) -> TriageResult:
    return judge.classify(TriageRequest(text=text, source=TicketSource.PATIENT_MESSAGE))


def without_model() -> Triager:
    judge = copy.copy(default_triager())
    judge.feedback_owner = None
    return judge


def test_a_complaint_that_names_no_service_reaches_the_one_it_is_about() -> None:
    # A blocked toilet and its smell: the rules alone read a smell as a symptom and send it to
    # the discharge department's nurses; it is a facilities complaint for logistics.
    text = "三楼病房的厕所堵了三天了也没人来修，满屋子的味儿"
    assert triage(text, without_model()).intent == "report"
    result = triage(text, default_triager())
    assert (result.intent, result.category, result.clinical) == ("complaint", "environment", False)
    assert result.suggested_tier is Tier.L2
    assert default_routing()[result.category] == "logistics"


def test_the_model_overrules_an_incidental_service_word_when_it_is_sure() -> None:
    # "on a trolley" names a facility; the complaint is about waiting (patient services).
    text = "my mum waited two hours in the corridor on a trolley, her back was killing her"
    assert triage(text, without_model()).category == "environment"
    assert default_routing()[triage(text, default_triager()).category] == "patient_services"


def test_a_named_service_is_kept_when_the_model_means_the_same_department() -> None:
    # The model's label for logistics is "environment"; the patient said parking.
    result = triage("停车场收费太贵了，而且排队很久才能进去", default_triager())
    assert (result.intent, result.category) == ("complaint", "parking")


def test_danger_outranks_the_feedback_model() -> None:
    model = FeedbackOwner.train(
        [OwnerExample("停车场收费太贵", "parking"), OwnerExample("胸口疼", "clinical")],
        default_routing(),
    )
    judge = copy.copy(default_triager())
    judge.feedback_owner = model
    result = triage("停车场找车位的时候我爸突然胸口剧痛，出了一身冷汗", judge)
    assert result.urgency is Priority.EMERGENCY
    assert result.clinical
    assert result.suggested_tier is Tier.L3


@pytest.mark.parametrize(
    ("label", "department", "expected"),
    [
        ("complaint", "logistics", "environment"),
        ("suggestion", "patient_services", "other"),
        ("complaint", "medical_affairs", "doctor_conduct"),
        ("complaint", "catering", "food"),
        ("praise", "cardiology", "praise"),
        ("emergency", "", "clinical"),
        ("clinical", "", "clinical"),
        ("routine", "", "question"),
    ],
)
def test_a_corpus_row_is_labelled_with_the_category_that_stands_for_its_department(
    label: str, department: str, expected: str
) -> None:
    assert owner_label(label, department, default_routing()) == expected


def test_a_department_nothing_is_routed_to_is_refused() -> None:
    with pytest.raises(ValidationFailed, match="no service category is routed to 'pharmacy'"):
        owner_label("complaint", "pharmacy", default_routing())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("text,owner\n停车太贵,parking\n", ":1: the header must be text,language,owner"),
        ("text,language,owner\n停车太贵,zh-CN,carpark\n", ":2: owner 'carpark' is not one of"),
        ("text,language,owner\n停车太贵,zh-CN\n", ":2: expected 3 columns, found 2"),
        ("text,language,owner\n ,zh-CN,parking\n", ":2: empty text"),
        ("text,language,owner\n谢谢,zh-CN,praise\n", "needs examples of complaints"),
    ],
)
def test_bad_examples_are_refused_by_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "feedback_examples.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValidationFailed, match=message):
        load_owner_examples(path)


def test_the_shipped_examples_load_and_cover_every_department() -> None:
    examples = load_owner_examples()
    routing = default_routing()
    departments = {routing[e.owner] for e in examples if e.owner in routing}
    assert {"logistics", "billing", "medical_affairs", "nursing", "catering"} <= departments


def test_the_cli_writes_examples_from_a_corpus_and_refuses_the_held_out_one(
    cli: Callable[..., tuple[int, str, str]], tmp_path: Path
) -> None:
    corpus = tmp_path / "mine.csv"
    corpus.write_text(
        "text,language,class,concept,department,kb_topic,pathway,discharge_department,note\n"
        "停车场太贵了,zh-CN,complaint,,logistics,,pci,cardiology,\n"
        "谢谢护士,zh-CN,praise,,cardiology,,pci,cardiology,\n"
        "胸口疼得厉害,zh-CN,emergency,chest_pain,,,pci,cardiology,\n",
        encoding="utf-8",
    )
    out = tmp_path / "owners.csv"
    code, stdout, _ = cli("triage", "owner-examples", str(corpus), str(out))
    assert code == 0, stdout
    assert "3 examples, 1 of them complaints or suggestions" in stdout
    assert [e.owner for e in load_owner_examples(out)] == ["environment", "praise", "clinical"]

    held_out = tmp_path / "heldout.csv"
    held_out.write_text(corpus.read_text("utf-8"), encoding="utf-8")
    code, _, stderr = cli("triage", "owner-examples", str(held_out), str(out))
    assert code != 0
    assert "the held-out corpus is for measuring only" in stderr
