"""The knowledge base: safe answers in both languages, matched only when the match is sure."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from suifang.core.enums import Tier
from suifang.core.errors import ValidationFailed
from suifang.core.triage import TriageRequest
from suifang.tickets.knowledge import (
    KnowledgeBase,
    answer,
    builtin_knowledge_dir,
    default_knowledge_base,
)
from suifang.tickets.triage import CATEGORIES, CLINICAL_CATEGORIES, classify

KB = default_knowledge_base()

# Routine questions written for this test, worded unlike the knowledge base's own examples.
ROUTINE_QUESTIONS = [
    ("支架术后那两种抗血小板的药到底吃到什么时候", "antiplatelet-duration"),
    ("昨天忘了吃替格瑞洛，今天怎么吃", "missed-dose"),
    ("拜阿司匹林饭前饭后哪个好", "aspirin-timing"),
    ("他汀类的药晚上吃效果好吗", "statin-timing"),
    ("硝酸甘油片怎么含服", "nitroglycerin-use"),
    ("我的降压药快没了，在哪能开", "repeat-prescription"),
    ("牙疼能吃布洛芬吗，我在吃双抗", "painkillers-and-cold-medicine"),
    ("术后伤口多少天能沾水洗澡", "wound-showering"),
    ("缝的线几天能拆", "stitches-removal"),
    ("家里换药多久换一次比较好", "dressing-change"),
    ("放完支架能自己开车吗，大概多久", "driving-after-stent"),
    ("出院后一天散步多长时间合适", "walking-each-day"),
    ("换了髋关节，睡觉能不能侧身", "hip-precautions"),
    ("有糖尿病，苹果能吃吗", "diabetes-fruit"),
    ("高血压吃盐要控制在多少", "salt-for-blood-pressure"),
    ("做了支架以后还能喝点白酒吗", "alcohol"),
    ("想戒烟但是戒不掉，有什么方法", "quit-smoking"),
    ("复查怎么在网上挂号", "book-follow-up"),
    ("抽血复查前一天晚上能吃饭吗", "fasting-before-tests"),
    ("复印病历需要带哪些材料", "copy-medical-records"),
    ("诊断证明在哪开", "medical-certificate"),
    ("住院押金多久能退回来", "deposit-and-refunds"),
    ("在外地参保的医保能不能在你们这报", "out-of-area-insurance"),
    ("来医院看病车停在哪", "parking"),
    ("探视病人几点可以进去", "visiting-hours"),
    ("有事找护士打什么电话", "contact-the-nurse"),
    ("how long should I keep taking ticagrelor after my stent", "antiplatelet-duration"),
    ("I missed this morning's tablet, do I double up tomorrow?", "missed-dose"),
    ("how do I use my GTN spray", "nitroglycerin-use"),
    ("is it ok to take paracetamol or ibuprofen with my aspirin", "painkillers-and-cold-medicine"),
    ("how many days until I can shower after the operation", "wound-showering"),
    ("when will the stitches be removed", "stitches-removal"),
    ("when can I get behind the wheel again after my stent", "driving-after-stent"),
    ("how many minutes a day should I walk", "walking-each-day"),
    ("is it safe to drink a beer or two", "alcohol"),
    ("what fruit is ok if I'm diabetic", "diabetes-fruit"),
    ("how do I make a follow up appointment", "book-follow-up"),
    ("how do I request copies of my medical notes", "copy-medical-records"),
    ("when will my deposit be refunded", "deposit-and-refunds"),
    ("what are visiting times on the ward", "visiting-hours"),
]

# Reports and complaints: each needs a person, even when it sounds like a known topic.
NOT_ROUTINE_QUESTIONS = [
    "伤口红肿流脓，还发烧了",
    "吃了阿司匹林以后胃疼得厉害",
    "走路的时候腿疼得厉害，肿了",
    "吃完饭以后一直拉肚子",
    "洗完澡伤口有点红",
    "伤口拆线以后裂开了",
    "吃了他汀以后肌肉疼得很",
    "走路走多了膝盖肿",
    "喝了点酒以后心跳很快",
    "最近总是头晕心慌",
    "复诊的时候医生态度很差",
    "停车场太难停了，每次都找不到位置",
    "收费处多收了我的钱",
    "my wound is oozing and smells",
    "the new tablets make me dizzy all day",
    "I took my aspirin and now my stomach hurts",
    "my knee is swollen after walking",
    "胸口疼，硝酸甘油怎么用",
    "can I shower? also I have chest pain",
    "能喝酒吗？刚才晕倒了一次",
]


def test_the_knowledge_base_has_forty_entries_answered_in_both_languages() -> None:
    entries = list(KB.entries.values())

    assert len(entries) >= 40
    for entry in entries:
        assert entry.questions["zh-CN"], entry.id
        assert entry.questions["en"], entry.id
        assert entry.answer["zh-CN"].strip(), entry.id
        assert entry.answer["en"].strip(), entry.id
    assert KB.categories <= set(CATEGORIES)


@pytest.mark.parametrize("entry_id", sorted(default_knowledge_base().entries))
def test_every_answer_says_when_to_call_120_or_the_nurse(entry_id: str) -> None:
    entry = KB.entries[entry_id]
    chinese, english = entry.answer["zh-CN"], entry.answer["en"]

    assert "120" in chinese
    assert "护士" in chinese or "急诊" in chinese
    assert "120" in english
    assert "nurse" in english or "emergency" in english


def test_antiplatelet_answers_never_allow_stopping_without_the_doctor() -> None:
    for entry_id in ("antiplatelet-duration", "dental-work-on-antiplatelets"):
        entry = KB.entries[entry_id]
        assert "不要自己停药" in entry.answer["zh-CN"] or "不要自己停" in entry.answer["zh-CN"]
        assert (
            "do not stop" in entry.answer["en"].lower()
            or "never stop" in entry.answer["en"].lower()
        )


def test_routine_questions_get_the_right_answer_or_none() -> None:
    """Measured: 33 of 40 answered, every one of them with the right entry.

    A wrong answer is worse than none (none means a nurse replies), so the bar is: no wrong
    answer at all, and at least 70 % answered.
    """
    answered, wrong = 0, []
    for text, expected in ROUTINE_QUESTIONS:
        result = classify(TriageRequest(text=text))
        if result.knowledge_answer is None:
            continue
        answered += 1
        if result.knowledge_answer.id != expected:
            wrong.append((text, expected, result.knowledge_answer.id))
    print(f"knowledge base: {answered}/{len(ROUTINE_QUESTIONS)} routine questions answered")

    assert wrong == []
    assert answered / len(ROUTINE_QUESTIONS) >= 0.7


@pytest.mark.parametrize("text", NOT_ROUTINE_QUESTIONS)
def test_symptom_reports_and_complaints_get_no_automatic_answer(text: str) -> None:
    result = classify(TriageRequest(text=text))

    assert result.knowledge_answer is None
    assert result.suggested_tier is not Tier.L1


def test_the_answer_comes_in_the_patients_language() -> None:
    chinese = answer("什么时候可以洗澡", "zh-CN", "wound_care")
    english = answer("什么时候可以洗澡", "en", "wound_care")

    assert chinese is not None
    assert english is not None
    assert chinese.id == english.id == "wound-showering"
    assert "淋浴" in chinese.answer
    assert "shower" in english.answer
    assert english.question == "when can I shower"
    assert 0.3 <= chinese.confidence <= 1


def test_only_the_predicted_category_is_searched() -> None:
    assert answer("什么时候可以洗澡", "zh-CN", "wound_care") is not None
    assert answer("什么时候可以洗澡", "zh-CN", "billing") is None
    assert answer("什么时候可以洗澡", "zh-CN", "clinical_symptom") is None


def test_a_statement_is_not_answered_even_on_a_known_topic() -> None:
    assert answer("停车场在哪里？", "zh-CN", "parking") is not None
    assert answer("停车场收费太贵了", "zh-CN", "parking") is None


def test_a_symptom_question_is_answered_only_by_an_entry_about_that_symptom() -> None:
    bruise = classify(TriageRequest(text="手腕穿刺的地方青了一大片，正常吗"))
    assert bruise.knowledge_answer is not None
    assert bruise.knowledge_answer.id == "puncture-site-bruise"

    for text in ["伤口有点红，正常吗", "is it normal for my wound to be a bit red?"]:
        result = classify(TriageRequest(text=text))
        assert result.category == "wound_care"
        assert result.knowledge_answer is None
        assert result.suggested_tier is Tier.L2


def test_a_red_flag_is_never_answered_whoever_asks() -> None:
    assert answer("硝酸甘油怎么用", "zh-CN", "medication") is not None
    assert answer("胸口疼得厉害，硝酸甘油怎么用", "zh-CN", "medication") is None
    assert answer("can I shower? my wound is bleeding heavily", "en", "wound_care") is None


def test_unrelated_text_is_not_answered() -> None:
    assert answer("我家的猫今天吃了什么？", "zh-CN", "medication") is None
    assert answer("what is the capital of France?", "en", "billing") is None
    assert answer("", "zh-CN", "medication") is None


def test_no_entry_answers_a_symptom_category() -> None:
    assert not KB.categories & {"clinical_symptom", "psychological"}
    assert KB.categories & CLINICAL_CATEGORIES


def test_a_hospital_directory_overrides_and_extends_the_built_in_entries(tmp_path: Path) -> None:
    (tmp_path / "ours.yaml").write_text(
        textwrap.dedent(
            """\
            - id: visiting-hours
              category: other
              questions:
                zh-CN: [探视时间是几点到几点]
                en: [what are the visiting hours]
              answer:
                zh-CN: 本院探视时间为每天15:00–20:00。如有紧急情况请拨打120，其他问题请联系护士。
                en: Visiting is 3 pm to 8 pm daily. In an emergency call 120; otherwise ask a nurse.
            - id: wifi
              category: other
              questions:
                zh-CN: [医院的wifi密码是多少]
                en: [what is the wifi password]
              answer:
                zh-CN: 连接"Hospital-Guest"，无需密码。身体不适请联系护士，紧急情况拨打120。
                en: Join "Hospital-Guest". If unwell ask a nurse; in an emergency call 120.
            """
        ),
        encoding="utf-8",
    )

    knowledge = KnowledgeBase.load(builtin_knowledge_dir(), tmp_path)

    visiting = knowledge.answer("探视时间是几点", "zh-CN", "other")
    assert visiting is not None
    assert "15:00" in visiting.answer
    wifi = knowledge.answer("wifi密码多少", "zh-CN", "other")
    assert wifi is not None
    assert wifi.id == "wifi"
    assert len(knowledge.entries) == len(KB.entries) + 1


def test_an_entry_without_an_english_answer_is_refused_with_file_and_id(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            - id: half-done
              category: other
              questions:
                zh-CN: [问题]
                en: [question]
              answer:
                zh-CN: 回答，紧急情况拨打120。
            """
        ),
        encoding="utf-8",
    )

    with pytest.raises(ValidationFailed) as error:
        KnowledgeBase.load(tmp_path)

    message = str(error.value)
    assert str(path) in message
    assert "entry 1 (half-done)" in message
    assert "needs en" in message


def test_the_same_id_twice_in_one_directory_is_refused(tmp_path: Path) -> None:
    entry = textwrap.dedent(
        """\
        - id: twice
          category: other
          questions: {zh-CN: [问], en: [ask]}
          answer: {zh-CN: 答120, en: answer 120}
        """
    )
    (tmp_path / "a.yaml").write_text(entry, encoding="utf-8")
    (tmp_path / "b.yaml").write_text(entry, encoding="utf-8")

    with pytest.raises(ValidationFailed, match=r"'twice' is already used in a\.yaml"):
        KnowledgeBase.load(tmp_path)


def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed, match="knowledge base directory not found"):
        KnowledgeBase.load(tmp_path / "nowhere")
