"""L1 triage: the category model, the policy over danger, intent, topic and answers, the hook."""

from __future__ import annotations

import collections
import time
from pathlib import Path

import pytest

import suifang.tickets.builtin
from suifang.core.categories import CATEGORY_IDS, CLINICAL_CATEGORIES, is_clinical
from suifang.core.enums import Priority, TicketSource, Tier
from suifang.core.errors import ValidationFailed
from suifang.core.hooks import hookimpl
from suifang.core.plugins import Plugins, get_plugin_manager
from suifang.core.triage import TriageRequest, TriageResult
from suifang.tickets.classifier import (
    CATEGORIES,
    Classifier,
    default_classifier,
    detect_language,
    load_dataset,
    split,
)
from suifang.tickets.triage import classify

ROWS = load_dataset()


def triage(text: str, **fields: object) -> TriageResult:
    return classify(TriageRequest(text=text, **fields))


# --------------------------------------------------------------------------- one definition


def test_one_definition_of_clinical_categories_is_used_everywhere() -> None:
    import suifang.workflows.journey_activities as journey_activities

    assert {
        "clinical_symptom",
        "medication",
        "wound_care",
        "rehabilitation",
        "diet_lifestyle",
        "test_results",
        "psychological",
    } == CLINICAL_CATEGORIES
    for name in ("staff_attitude", "suggestion", "praise", "medical_records", "call_task"):
        assert not is_clinical(name)
    assert not hasattr(journey_activities, "NON_CLINICAL")
    assert set(CATEGORIES) == set(CATEGORY_IDS) - {"call_task"}


# --------------------------------------------------------------------------- the category model


def test_the_labelled_set_covers_every_category_in_both_languages() -> None:
    counts = collections.Counter(row.category for row in ROWS)
    languages = collections.Counter(row.language for row in ROWS)
    assert len(ROWS) >= 2000
    assert set(counts) == set(CATEGORIES)
    assert min(counts.values()) >= 25, counts
    assert languages["zh-CN"] > languages["en"] >= 600
    assert len({row.text for row in ROWS}) == len(ROWS), "no message is listed twice"


def test_a_bad_row_is_refused_with_its_line_and_column_but_not_its_text(tmp_path: Path) -> None:
    path = tmp_path / "messages.csv"
    path.write_text(
        "text,language,category\n伤口有点红,zh-CN,wound_care\n王某某的秘密病情,zh-CN,gossip\n",
        encoding="utf-8",
    )
    with pytest.raises(ValidationFailed) as error:
        load_dataset(path)
    assert f"{path}:3" in str(error.value)
    assert "category 'gossip' is not one of" in str(error.value)
    assert "秘密" not in str(error.value)


def test_a_wrong_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "messages.csv"
    path.write_text("message,label\nhello,other\n", encoding="utf-8")
    with pytest.raises(ValidationFailed, match=r":1: the header must be text,language,category"):
        load_dataset(path)


def test_held_out_category_accuracy_clears_the_bar_on_every_split() -> None:
    """Five stratified 80/20 splits of messages.csv: the topic of a message, which decides
    who owns a question or a complaint (danger is the lexicon's, not the model's)."""
    accuracies = []
    for seed in range(5):
        train, held_out = split(ROWS, holdout=0.2, seed=seed)
        model = Classifier.train(train)
        right = sum(model.predict(row.text).category == row.category for row in held_out)
        accuracy = right / len(held_out)
        print(f"split {seed}: n={len(held_out)} accuracy={accuracy:.3f}")
        assert accuracy >= 0.70
        accuracies.append(accuracy)
    assert sum(accuracies) / len(accuracies) >= 0.74


def test_training_is_fast_and_deterministic() -> None:
    started = time.perf_counter()
    first = Classifier.train(ROWS)
    seconds = time.perf_counter() - started
    second = Classifier.train(list(ROWS))
    assert seconds < 2.0
    for row in ROWS[::11]:
        assert first.predict(row.text) == second.predict(row.text)
    assert first.predict(ROWS[0].text) == default_classifier().predict(ROWS[0].text)


def test_predict_refuses_what_is_not_text() -> None:
    with pytest.raises(ValidationFailed, match="must be a string, not int"):
        default_classifier().predict(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("医生 my wound is red", "en"),
        ("请问CT结果出来了吗", "zh-CN"),
        ("👍👍", "zh-CN"),
        ("when can I shower", "en"),
    ],
)
def test_language_is_detected_by_script(text: str, language: str) -> None:
    assert detect_language(text) == language


# --------------------------------------------------------------------------- the policy


def test_the_issue_examples_of_missed_emergencies_are_emergencies() -> None:
    cases = {
        "胸口特别闷，出了一身冷汗": "chest_pain",
        "活着真没意思，安眠药我已经攒了好几瓶了": "suicidality",
        "I'm so tired of living, I've been saving up my sleeping pills": "suicidality",
        "测了血糖2.7，手一直抖，出冷汗": "hypoglycaemia",
        "my sugar is 2.8 and I'm shaking and sweating": "hypoglycaemia",
        "小便里有血，肚子也疼": "haematuria",
    }
    for text, concept in cases.items():
        result = triage(text)
        assert result.urgency is Priority.EMERGENCY, text
        assert result.suggested_tier is Tier.L3
        assert concept in result.red_flags, (text, result.red_flags)
        assert result.knowledge_answer is None
        assert result.advice, "an emergency always carries its advice for the patient"


def test_an_emergency_category_and_advice_follow_the_concept() -> None:
    suicidal = triage("不想活了，药都攒好了")
    assert suicidal.category == "psychological"
    assert suicidal.advice[0] == "suicidality"
    hypo = triage("血糖2.6")
    assert hypo.advice == ["hypoglycaemia"]
    bleeding = triage("刀口一直在流血，纱布都湿透了")
    assert bleeding.advice[0] == "bleeding"


def test_a_danger_sign_outranks_what_else_the_message_is_about() -> None:
    result = triage("停车场找了半天车位，我爸在车里晕倒了叫不醒")
    assert result.urgency is Priority.EMERGENCY
    assert result.clinical


@pytest.mark.parametrize(
    "text",
    [
        "血压165/100，有点头晕",
        "吃了新开的降压药以后老是头晕",
        "差点摔倒了，扶着墙才站稳",
        "伤口有一点点红",
        "my ankles are a bit swollen this week",
    ],
)
def test_a_clinical_matter_goes_to_a_person_never_to_the_automaton(text: str) -> None:
    result = triage(text)
    assert result.clinical
    assert result.suggested_tier is not Tier.L1
    assert result.knowledge_answer is None


def test_an_urgent_clinical_message_goes_to_the_doctor_tier() -> None:
    # The lexicon reads it as urgent; the second opinion may raise it to an emergency
    # ("when unsure, choose emergency"), never lower it.
    result = triage("伤口流脓了，周围又红又肿")
    assert result.urgency in (Priority.URGENT, Priority.EMERGENCY)
    assert result.suggested_tier is Tier.L3
    assert "wound_infection" in [*result.red_flags, *result.warning_signs]


@pytest.mark.parametrize(
    "text", ["血压165/100，有点头晕", "伤口有一点点红", "my ankles are a bit swollen this week"]
)
def test_a_mild_clinical_matter_is_not_paged_as_an_emergency(text: str) -> None:
    assert triage(text).urgency is not Priority.EMERGENCY


@pytest.mark.parametrize(
    ("text", "entry"),
    [
        ("支架术后多久可以洗澡？", "wound-showering"),
        ("when can I drive again after my hip replacement?", "driving-after-hip-surgery"),
        ("停车场在哪里？", "parking"),
    ],
)
def test_routine_questions_are_answered_at_l1(text: str, entry: str) -> None:
    result = triage(text)
    assert result.knowledge_answer is not None, text
    assert result.knowledge_answer.id == entry
    assert result.suggested_tier is Tier.L1
    assert result.intent == "question"


def test_a_question_about_a_symptom_the_patient_has_is_not_answered_automatically() -> None:
    result = triage("穿刺的地方青了一大片，正常吗")
    assert result.knowledge_answer is None
    assert result.suggested_tier is not Tier.L1


def test_a_hypothetical_question_about_danger_is_answered_not_escalated() -> None:
    result = triage("如果胸口疼应该怎么办？")
    assert result.urgency is Priority.ROUTINE
    assert result.red_flags == []


@pytest.mark.parametrize(
    "text",
    [
        "谢谢，一切都好",
        "thank you, all fine!",
        "恢复得很好，谢谢王医生和护士们",
        "Can't thank the team enough, best care I've ever had",
        "👍👍 好着呢",
        "The checkup staff were super friendly and quick, will def come back next year",
        "the lactation nurse was a lifesaver honestly",
        "very satisfied with the ward, everyone was super responsible",
        # 啥都中 says "everything is fine": 啥 before 都 does not ask.
        "谢谢大夫，俺现在啥都中，吃嘛嘛香",
        # "did it" after the thanks tells what the patient did; "did it hurt?" would ask.
        "thanks for the text about the recheck, went and did it and all clear :)",
    ],
)
def test_thanks_are_praise_at_l1_not_a_ticket(text: str) -> None:
    result = triage(text)
    assert result.intent == "praise"
    assert result.category == "praise"
    assert result.suggested_tier is Tier.L1


def test_by_the_way_turns_thanks_to_the_complaint_that_follows() -> None:
    result = triage("谢谢骨科的大夫，顺便说一句，门诊楼的电梯老坏，等了半天")
    assert result.intent == "complaint"
    assert result.category == "environment"


def test_a_praise_word_inside_a_suggestion_is_not_thanks() -> None:
    result = triage("it would be lovely to have a chat group for patients after knee ops")
    assert result.intent == "suggestion"
    assert result.suggested_tier is Tier.L2


@pytest.mark.parametrize(
    ("text", "category"),
    [
        # An exclamation (太…了吧) complains even though 什么 seems to ask.
        ("复印个病历还得本人来，要什么授权书，也太折腾了吧", "medical_records"),
        # A discharge decision is the doctor's, whatever ward care the message mentions.
        (
            "why did they discharge my mum when she couldnt even get to the toilet? "
            "felt like they just wanted the bed",
            "doctor_conduct",
        ),
        ("只是拿个药为啥收了我五百多？隔壁床才两百", "billing"),
        ("drove round and round the car park for ages, then circling again. brilliant", "parking"),
    ],
)
def test_complaints_in_disguise_reach_the_service_they_are_about(text: str, category: str) -> None:
    result = triage(text)
    assert result.intent == "complaint"
    assert result.category == category
    assert result.suggested_tier is Tier.L2


@pytest.mark.parametrize(
    "text",
    [
        "谢谢关心，就是伤口还有点渗液",
        "退烧了，谢谢",
        "不疼了，谢谢医生",
        "the fever is gone, thanks so much",
    ],
)
def test_thanks_with_a_symptom_in_it_are_a_clinical_matter_for_a_nurse(text: str) -> None:
    # A symptom that is over is still news about the patient's body: a nurse reads it, and
    # it is never filed as a compliment to the doctor it thanks.
    result = triage(text)
    assert result.intent != "praise"
    assert result.clinical
    assert result.suggested_tier is Tier.L2


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("医生说话太快了，我一点都没听懂，问了也不耐烦", "doctor_conduct"),
        ("夜班护士态度很差，按铃半天不来", "nursing_care"),
        ("收费处多收了我两百块钱", "billing"),
        ("医保报销的钱到现在还没到账", "insurance"),
        ("停车场太难停了，转了半小时都没车位", "parking"),
        ("the hospital food was cold again and tasted awful", "food"),
        # The canteen's prices are the canteen's, not the cashier's.
        ("病号饭贵得离谱，一份青菜十几块", "food"),
        ("canteen prices are a joke, 35 kuai for cold noodles", "food"),
        ("为什么收我两次挂号费？同一天同一个科室啊", "billing"),
        # The follow-up messages are the follow-up service's, even when they are the noise.
        ("随访短信半夜十二点发过来，把我和宝宝都吵醒了", "other"),
        ("换药的护士一边换一边刷手机，这样真的好吗？", "nursing_care"),
        # Sarcastic praise is a complaint.
        ("护士态度真好啊，好到我问句话被白了三眼", "nursing_care"),
        ("Great, the doctor didnt even listen to what my mum was saying", "doctor_conduct"),
        ("the toilets on the ward were filthy", "environment"),
        ("we waited three hours past our appointment time", "waiting_time"),
    ],
)
def test_complaints_go_to_the_service_that_owns_them(text: str, category: str) -> None:
    result = triage(text)
    assert result.intent == "complaint", text
    assert result.category == category, (text, result.category)
    assert result.suggested_tier is Tier.L2
    assert not result.clinical


def test_a_complaint_that_mentions_the_body_is_still_a_complaint() -> None:
    result = triage("护士抽血扎了好几针，手都扎青了，态度还很差")
    assert result.intent == "complaint"
    assert result.category == "nursing_care"


def test_a_complaint_is_never_answered_automatically_even_with_a_question() -> None:
    result = triage("停车场太难停了，到底哪里能停车？")
    assert result.intent == "complaint"
    assert result.suggested_tier is Tier.L2


def test_a_complaint_is_informed_only_from_the_service_it_is_about() -> None:
    canteen = triage("投诉食堂！饭菜咸死了，高血压病人每天能吃多少盐啊？")
    assert (canteen.intent, canteen.category) == ("complaint", "food")
    assert canteen.knowledge_answer is None  # no salt-and-blood-pressure advice from the kitchen
    parking = triage("停车场太难停了，到底哪里能停车？")
    assert parking.knowledge_answer is not None
    assert parking.knowledge_answer.id.startswith("parking")


def test_denied_danger_words_do_not_make_the_second_opinion_page() -> None:
    result = triage("not short of breath at all now, the pneumonia cough is almost gone")
    assert result.urgency is not Priority.EMERGENCY
    assert result.clinical  # the cough is still for a nurse to read


def test_a_suggestion_goes_to_the_department_it_is_about() -> None:
    result = triage("建议医院多设几个停车位")
    assert result.intent == "suggestion"
    assert result.category == "parking"
    general = triage("希望随访短信的字能大一点")
    assert general.intent == "suggestion"


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("wifi in the ward is basically nonexistent", "environment"),
        ("从早上八点等到十二点，看了五分钟", "waiting_time"),
        ("大夫一边看病一边刷手机，我说话他头都不抬一下", "doctor_conduct"),
        ("开个病假条要医生签字又要病案室盖章，来来回回折腾好几次", "medical_records"),
    ],
)
def test_feedback_without_complaint_words_still_reaches_its_owner(text: str, category: str) -> None:
    result = triage(text)
    assert result.intent == "complaint", text
    assert result.category == category, (text, result.category)


def test_praise_then_but_is_a_complaint_about_what_follows_the_but() -> None:
    result = triage("谢谢医生手术做得好，就是你们这停车真的太难了，每次来都要绕好几圈")
    assert (result.intent, result.category) == ("complaint", "parking")
    denied = triage("病房的护士问个问题就嫌烦，一点耐心都没有")
    assert (denied.intent, denied.category) == ("complaint", "nursing_care")
    kind = triage("Dr Zhang was brilliant, explained everything twice without getting annoyed")
    assert kind.intent == "praise"


@pytest.mark.parametrize(
    ("text", "category"),
    [
        (
            "the ward nurses were kind, but the surgeon never came round to tell us anything",
            "doctor_conduct",
        ),
        ("谢谢王主任，就是夜里护士叫了好久都没人来", "nursing_care"),
        ("doctor was fab, but the insurance desk says only half of it is covered", "insurance"),
        (
            "Nurses were angels honestly. The finance desk on the other hand... 3 trips to get "
            "a proper invoice",
            "billing",
        ),
        ("Doctors 10/10. Nurses 10/10. The 'chicken' on tuesday 0/10", "food"),
    ],
)
def test_praise_then_a_but_about_someone_else_is_their_complaint(text: str, category: str) -> None:
    # No complaint word after the "but": turning from thanks to a person or a service is one.
    result = triage(text)
    assert (result.intent, result.category) == ("complaint", category), text


def test_praise_then_a_but_that_asks_is_a_question() -> None:
    result = triage("谢谢医生，就是想问一下医保怎么报销")
    assert result.intent == "question"


@pytest.mark.parametrize("text", ["没有", "还好", "ok", "No.", "嗯嗯 好的 👍", "n/a"])
def test_a_reply_with_nothing_to_report_opens_nothing(text: str) -> None:
    result = triage(text)
    assert (result.intent, result.suggested_tier, result.clinical) == ("nothing", Tier.L1, False)


@pytest.mark.parametrize("text", ["没有胸痛", "还好，就是伤口有点红", "ok?"])
def test_nothing_to_report_means_the_whole_message(text: str) -> None:
    assert triage(text).intent != "nothing"


def test_a_known_locale_wins_over_detection() -> None:
    assert triage("CT", locale="en").language == "en"
    assert triage("ok", locale="zh-CN").language == "zh-CN"


def test_the_same_message_always_gets_the_same_triage() -> None:
    text = "吃了阿司匹林胃有点不舒服"
    assert triage(text) == triage(text)


def test_a_very_long_message_is_still_scanned_to_the_end() -> None:
    text = "请问复诊怎么预约。" * 400 + "另外我胸口很疼，出冷汗"
    assert triage(text).urgency is Priority.EMERGENCY


def test_classify_is_fast_enough_for_the_workload_simulator() -> None:
    texts = [row.text for row in ROWS[:300]]
    triage(texts[0])  # warm
    started = time.perf_counter()
    for text in texts:
        triage(text)
    per_message = (time.perf_counter() - started) / len(texts)
    print(f"classify: {per_message * 1000:.2f} ms per message")
    assert per_message < 0.02


def test_alert_and_call_task_sources_are_not_answered_automatically() -> None:
    result = classify(TriageRequest(text="停车场在哪里？", source=TicketSource.COMPLAINT))
    assert result.knowledge_answer is None


# --------------------------------------------------------------------------- the hook


def test_the_builtin_plugin_triages_through_a_real_plugin_manager() -> None:
    plugins = Plugins(get_plugin_manager(entrypoints=False))
    result = plugins.triage(TriageRequest(text="刀口流黄水，还有点臭味，正常吗"))
    assert result.category == "wound_care"
    assert result.urgency is Priority.URGENT
    assert result.sources == ["local"]


def test_a_hospital_plugin_registered_later_answers_first() -> None:
    class Hospital:
        @hookimpl
        def suifang_triage(self, request: TriageRequest) -> TriageResult:
            return TriageResult(category="other", urgency=Priority.ROUTINE, confidence=1.0)

    plugins = Plugins(get_plugin_manager(entrypoints=False))
    plugins.pm.register(Hospital(), name="hospital-triage")
    assert plugins.triage(TriageRequest(text="胸口疼")).category == "other"
    assert suifang.tickets.builtin.suifang_triage(TriageRequest(text="胸口疼")).red_flags


def test_a_key_given_twice_in_the_intent_cues_is_refused_with_both_lines(tmp_path: Path) -> None:
    from suifang.tickets.intent import IntentReader

    path = tmp_path / "intents.yaml"
    path.write_text(
        "version: 1\nintents:\n  praise:\n    en: [thanks]\n  praise:\n    en: [cheers]\n",
        encoding="utf-8",
    )
    with pytest.raises(
        ValidationFailed, match=r"intents\.yaml:5: .*'praise' is given twice \(first on line 3\)"
    ):
        IntentReader.load(path)


@pytest.mark.parametrize(
    "text",
    [
        "这个月漏了好几次氯吡格雷，要紧吗",
        "I've missed a few doses of my ticagrelor this week, what now?",
        "糖化上次6.9这次涨到8.1了，怎么回事",
        "my a1c went from 6.8 to 8.0, do I need new tablets?",
    ],
)
def test_missed_doses_and_a_result_getting_worse_reach_a_clinician(text: str) -> None:
    # One forgotten tablet has a standard answer; several missed doses of a medicine, or a
    # result that rose, is for a nurse or doctor to judge.
    result = triage(text)
    assert result.knowledge_answer is None, text
    assert result.suggested_tier is not Tier.L1, text
    assert result.clinical, text
