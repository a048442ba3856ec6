"""The knowledge base: 120+ reviewed entries in both languages, BM25 retrieval with synonyms,
answers only when the match is sure."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest
import yaml

from suifang.core.categories import CATEGORY_IDS
from suifang.core.errors import ValidationFailed
from suifang.tickets.knowledge import (
    KnowledgeBase,
    builtin_knowledge_dir,
    default_knowledge_base,
    load_synonyms,
)

KB = default_knowledge_base()
DEPARTMENTS = {
    d["code"]
    for d in yaml.safe_load(
        (Path(__file__).resolve().parents[2] / "templates" / "departments.yaml").read_text("utf-8")
    )
}
PATHWAYS = {"pci", "diabetes", "hip-replacement", "post-checkup", "hypertension", "general", "all"}


def test_the_knowledge_base_has_120_reviewed_entries_in_both_languages() -> None:
    assert len(KB.entries) >= 120
    for entry in KB.entries.values():
        assert entry.category in CATEGORY_IDS
        assert entry.owner in DEPARTMENTS, (entry.id, entry.owner)
        assert entry.review_by > entry.reviewed_on
        assert set(entry.pathways) <= PATHWAYS, entry.id
        for locale in ("zh-CN", "en"):
            assert entry.questions[locale], entry.id
            assert entry.answer[locale].strip(), entry.id


def test_every_built_in_pathway_has_its_common_questions_covered() -> None:
    served: dict[str, int] = {}
    for entry in KB.entries.values():
        for pathway in entry.pathways:
            served[pathway] = served.get(pathway, 0) + 1
    for pathway in ("pci", "diabetes", "hip-replacement", "post-checkup", "hypertension"):
        assert served.get(pathway, 0) + served.get("all", 0) >= 20, (pathway, served)


@pytest.mark.parametrize("entry_id", sorted(KB.entries))
def test_every_answer_says_when_to_call_120_or_a_person(entry_id: str) -> None:
    entry = KB.entries[entry_id]
    zh, en = entry.answer["zh-CN"], entry.answer["en"].lower()
    assert any(word in zh for word in ("120", "护士", "医生", "急诊", "服务台", "窗口", "咨询")), (
        entry_id
    )
    assert any(word in en for word in ("120", "nurse", "doctor", "emergency", "desk", "staff")), (
        entry_id
    )


def test_no_answer_lets_a_patient_stop_an_antiplatelet_on_their_own() -> None:
    for entry in KB.entries.values():
        zh, en = entry.answer["zh-CN"], entry.answer["en"].lower()
        if "抗血小板" in zh or "氯吡格雷" in zh or "替格瑞洛" in zh:
            for allowed in ("可以停药", "可以自己停", "停几天没关系", "自行停用也可以"):
                assert allowed not in zh, entry.id
        if "antiplatelet" in en or "clopidogrel" in en:
            assert "you can stop" not in en, entry.id


@pytest.mark.parametrize(
    ("text", "entry"),
    [
        ("冲凉的时候伤口能碰水吗", "wound-showering"),  # a synonym of 洗澡
        ("吃着Plavix还要一直吃奥美拉唑护胃吗", "stomach-protection-ppi"),  # brand names
        ("is it ok to have a pint with my bp tablets?", "alcohol-with-bp-medicine"),
        ("换了髋关节以后多久能自己开车", "driving-after-hip-surgery"),
        ("how long do I keep taking the blood thinners after the stent?", "antiplatelet-duration"),
        ("体检报告说有脂肪肝怎么办", "fatty-liver-finding"),
        ("胰岛素开封以后放冰箱还是常温", "insulin-storage"),
    ],
)
def test_paraphrases_find_their_entry(text: str, entry: str) -> None:
    answer = KB.answer(text, "zh-CN")
    assert answer is not None, text
    assert answer.id == entry


def test_the_answer_comes_in_the_patients_language() -> None:
    zh = KB.answer("停车场在哪里？", "zh-CN")
    en = KB.answer("停车场在哪里？", "en")
    assert zh is not None
    assert en is not None
    assert zh.answer == KB.entries[zh.id].answer["zh-CN"]
    assert en.answer == KB.entries[en.id].answer["en"]


def test_a_statement_is_not_answered_even_on_a_known_topic() -> None:
    assert KB.answer("我明天去复诊", "zh-CN") is None


def test_unrelated_text_is_not_answered() -> None:
    for text in ("我儿子什么时候放假？", "what's the weather tomorrow?", "？？？"):
        assert KB.answer(text, "zh-CN") is None, text


def test_entries_due_for_review_are_listed() -> None:
    later = max(e.review_by for e in KB.entries.values()) + dt.timedelta(days=1)
    assert len(KB.due_for_review(later)) == len(KB.entries)
    assert KB.due_for_review(dt.date(2026, 12, 5)) == []


def _entry(entry_id: str, answer_en: str = "Same day.", **extra: str) -> str:
    fields = "".join(f"  {k}: {v}\n" for k, v in extra.items())
    return (
        textwrap.dedent(
            f"""\
        - id: {entry_id}
          category: other
          owner: patient_services
          reviewed_on: 2026-12-01
          review_by: 2027-12-01
          questions:
            zh-CN: [探视时间是几点]
            en: [what are the visiting hours]
          answer:
            zh-CN: 每天15点到20点，有疑问请问护士。
            en: {answer_en}
        """
        )
        + fields
    )


def test_a_hospital_directory_overrides_and_extends_the_built_in_entries(tmp_path: Path) -> None:
    (tmp_path / "ours.yaml").write_text(
        _entry("visiting-hours", "Visiting is 15:00 to 20:00; ask the nurse.")
        + _entry("wifi", "The Wi-Fi is HOSPITAL-GUEST; ask the desk."),
        encoding="utf-8",
    )
    (tmp_path / "examples.csv").write_text(
        "entry,language,question\nwifi,en,whats the wifi password\n", encoding="utf-8"
    )
    kb = KnowledgeBase.load(builtin_knowledge_dir(), tmp_path)
    assert kb.entries["visiting-hours"].answer["en"].startswith("Visiting is 15:00")
    assert "wifi" in kb.entries
    assert len(kb.entries) == len(KB.entries) + 1


def test_an_entry_without_an_english_answer_is_refused_with_file_and_id(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(_entry("no-english", '""'), encoding="utf-8")
    with pytest.raises(ValidationFailed) as error:
        KnowledgeBase.load(tmp_path)
    assert str(path) in str(error.value)
    assert "(no-english)" in str(error.value)
    assert "answer" in str(error.value)


def test_a_review_date_before_the_review_is_refused(tmp_path: Path) -> None:
    text = _entry("stale").replace("review_by: 2027-12-01", "review_by: 2025-01-01")
    (tmp_path / "bad.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ValidationFailed, match=r"review_by .* must come after reviewed_on"):
        KnowledgeBase.load(tmp_path)


def test_an_unknown_category_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        _entry("x").replace("category: other", "category: gossip"), encoding="utf-8"
    )
    with pytest.raises(ValidationFailed, match="'gossip' is not a category"):
        KnowledgeBase.load(tmp_path)


def test_the_same_id_twice_in_one_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(_entry("dup"), encoding="utf-8")
    (tmp_path / "b.yaml").write_text(_entry("dup"), encoding="utf-8")
    with pytest.raises(ValidationFailed, match=r"'dup' is already used in a\.yaml"):
        KnowledgeBase.load(tmp_path)


def test_examples_for_an_unknown_entry_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(_entry("known"), encoding="utf-8")
    (tmp_path / "examples.csv").write_text(
        "entry,language,question\nnot-there,en,hello\n", encoding="utf-8"
    )
    with pytest.raises(ValidationFailed, match="no knowledge-base entry 'not-there'"):
        KnowledgeBase.load(tmp_path)


def test_a_bad_examples_row_names_its_line(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(_entry("known"), encoding="utf-8")
    (tmp_path / "examples.csv").write_text(
        "entry,language,question\nknown,fr,bonjour\n", encoding="utf-8"
    )
    with pytest.raises(ValidationFailed, match=r"examples.csv:2: language 'fr'"):
        KnowledgeBase.load(tmp_path)


def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed, match="knowledge base directory not found"):
        KnowledgeBase.load(tmp_path / "nope")


def test_a_word_in_two_synonym_groups_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "synonyms.yaml"
    path.write_text("version: 1\ngroups:\n  - [洗澡, 淋浴]\n  - [淋浴, 冲凉]\n", encoding="utf-8")
    with pytest.raises(ValidationFailed, match=r"groups\[1\]: '淋浴' is already in groups\[0\]"):
        load_synonyms(path)
