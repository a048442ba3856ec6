"""Splitting a patient's text reply into questionnaire answers and the words besides."""

from __future__ import annotations

from pathlib import Path

import pytest

from suifang.core.pathways import load_template
from suifang.workflows.replies import parse_reply, split_reply

PCI = load_template(Path(__file__).parents[2] / "templates" / "pathways" / "pci.yaml")
QUESTIONS = PCI.questionnaires["pci_check"]


@pytest.mark.parametrize(
    ("reply", "answers", "rest"),
    [
        (
            "否,1,1,否,1,1",
            {
                "chest_pain": "否",
                "breathless": "1",
                "antiplatelet": "1",
                "bleeding": "否",
                "puncture_site": "1",
                "activity": "1",
            },
            "",
        ),
        ("chest_pain=no, 伤口有点痒", {"chest_pain": "no"}, "伤口有点痒"),
        ("1.否 2.1 今天有点头晕", {"chest_pain": "否", "breathless": "1"}, "今天有点头晕"),
        # "是" is not an answer to the second question: nothing is taken for an answer.
        ("否,是,伤口有点红", {}, "否,是,伤口有点红"),
        ("没有胸痛,但是伤口一直在流血", {}, "没有胸痛,但是伤口一直在流血"),
        ("挺好的，谢谢", {}, "挺好的,谢谢"),
    ],
)
def test_answers_come_out_and_the_words_stay_whole(
    reply: str, answers: dict[str, str], rest: str
) -> None:
    assert split_reply(reply, QUESTIONS) == (answers, rest)


def test_a_reply_of_only_answers_parses_and_words_do_not() -> None:
    assert parse_reply("否,1,1,否,1,1", QUESTIONS) == {
        "chest_pain": "否",
        "breathless": "1",
        "antiplatelet": "1",
        "bleeding": "否",
        "puncture_site": "1",
        "activity": "1",
    }
    assert parse_reply("我胸口疼", QUESTIONS) is None
