"""L1 triage: the labelled data, the classifier's measured accuracy, red flags, tiers, the hook."""

from __future__ import annotations

import collections
import time
from pathlib import Path

import pytest

import suifang.tickets.builtin
from suifang.core.enums import Priority, TicketSource, Tier
from suifang.core.errors import ValidationFailed
from suifang.core.hooks import hookimpl
from suifang.core.plugins import Plugins
from suifang.core.triage import TriageRequest, TriageResult
from suifang.tickets.triage import (
    CATEGORIES,
    CLINICAL_CATEGORIES,
    Classifier,
    LabelledMessage,
    RedFlagLexicon,
    abnormal_vitals,
    classify,
    default_classifier,
    detect_language,
    load_dataset,
    split,
)

ROWS = load_dataset()
TEXTS = {row.text for row in ROWS}


def triage(text: str, **fields: object) -> TriageResult:
    return classify(TriageRequest(text=text, **fields))


# --------------------------------------------------------------------------- the data


def test_the_labelled_set_is_large_varied_and_mostly_chinese() -> None:
    counts = collections.Counter(row.category for row in ROWS)
    languages = collections.Counter(row.language for row in ROWS)
    urgencies = collections.Counter(row.urgency for row in ROWS)

    assert len(ROWS) >= 800
    assert set(counts) == set(CATEGORIES)
    assert min(counts.values()) >= 30, counts
    assert languages["zh-CN"] > languages["en"] >= 200
    assert urgencies[Priority.EMERGENCY] >= 40
    assert urgencies[Priority.URGENT] >= 40
    assert len(TEXTS) == len(ROWS), "no message is listed twice"


def test_split_holds_out_the_same_share_of_every_category_reproducibly() -> None:
    train, held_out = split(ROWS, holdout=0.2, seed=7)

    assert len(train) + len(held_out) == len(ROWS)
    assert {row.text for row in train}.isdisjoint({row.text for row in held_out})
    per_category = collections.Counter(row.category for row in held_out)
    totals = collections.Counter(row.category for row in ROWS)
    for category, total in totals.items():
        assert per_category[category] == round(total * 0.2)
    assert split(ROWS, holdout=0.2, seed=7) == (train, held_out)
    assert split(ROWS, holdout=0.2, seed=8) != (train, held_out)


def test_a_bad_row_is_refused_with_its_line_and_column_but_not_its_text(tmp_path: Path) -> None:
    path = tmp_path / "messages.csv"
    path.write_text(
        "text,language,category,urgency\n"
        "伤口有点红,zh-CN,wound_care,routine\n"
        "王某某的秘密病情,zh-CN,gossip,routine\n",
        encoding="utf-8",
    )

    with pytest.raises(ValidationFailed) as error:
        load_dataset(path)

    message = str(error.value)
    assert f"{path}:3" in message
    assert "category 'gossip' is not one of" in message
    assert "秘密" not in message


def test_a_wrong_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "messages.csv"
    path.write_text("message,label\nhello,other\n", encoding="utf-8")

    with pytest.raises(ValidationFailed, match=r":1: the header must be text,language"):
        load_dataset(path)


# --------------------------------------------------------------------------- the model


def _scores(model: Classifier, held_out: list[LabelledMessage]) -> tuple[float, float, float]:
    """Category accuracy, macro-F1 and clinical/non-clinical accuracy on ``held_out``."""
    predicted = [model.predict(row.text).category for row in held_out]
    hits = collections.Counter()
    false_positives = collections.Counter()
    false_negatives = collections.Counter()
    for guess, row in zip(predicted, held_out, strict=True):
        if guess == row.category:
            hits[guess] += 1
        else:
            false_positives[guess] += 1
            false_negatives[row.category] += 1
    accuracy = sum(hits.values()) / len(held_out)
    f1 = [2 * hits[c] / (2 * hits[c] + false_positives[c] + false_negatives[c]) for c in CATEGORIES]
    clinical = sum(
        (guess in CLINICAL_CATEGORIES) == (row.category in CLINICAL_CATEGORIES)
        for guess, row in zip(predicted, held_out, strict=True)
    ) / len(held_out)
    return accuracy, sum(f1) / len(f1), clinical


def test_held_out_accuracy_clears_the_bar_on_every_split() -> None:
    """Five stratified 80/20 splits: accuracy 0.80-0.84, mean 0.82 (eight splits: 0.77-0.84).

    The bar: a mean of ≥ 0.80 and no split below 0.76, macro-F1 likewise. Most misses are
    between neighbouring clinical categories (medication vs. symptom), which route alike — a
    clinical ticket goes to the discharge department whatever its category — so the routing
    decision that matters, clinical or not, is held to ≥ 0.90 (measured 0.92-0.96). Category
    labels of short patient messages are themselves ambiguous (is "the parking attendant was
    rude" parking or staff?), which caps what any model scores on this data.
    """
    accuracies = []
    for seed in range(5):
        train, held_out = split(ROWS, holdout=0.2, seed=seed)
        accuracy, macro_f1, clinical = _scores(Classifier.train(train), held_out)
        print(
            f"split {seed}: n={len(held_out)} accuracy={accuracy:.3f} "
            f"macro-F1={macro_f1:.3f} clinical={clinical:.3f}"
        )
        assert accuracy >= 0.76
        assert macro_f1 >= 0.76
        assert clinical >= 0.90
        accuracies.append(accuracy)
    print(f"mean accuracy {sum(accuracies) / len(accuracies):.3f}")
    assert sum(accuracies) / len(accuracies) >= 0.80


def test_training_is_fast_and_deterministic() -> None:
    started = time.perf_counter()
    first = Classifier.train(ROWS)
    seconds = time.perf_counter() - started
    second = Classifier.train(list(ROWS))
    print(f"trained on {len(ROWS)} messages in {seconds * 1000:.0f} ms")

    assert seconds < 1.0
    for row in ROWS[::7]:
        assert first.predict(row.text) == second.predict(row.text)
    assert first.predict(ROWS[0].text) == default_classifier().predict(ROWS[0].text)


def test_confidence_tracks_correctness() -> None:
    train, held_out = split(ROWS, holdout=0.2, seed=0)
    model = Classifier.train(train)
    right, wrong = [], []
    for row in held_out:
        prediction = model.predict(row.text)
        (right if prediction.category == row.category else wrong).append(prediction.confidence)

    assert sum(right) / len(right) > sum(wrong) / len(wrong) + 0.15


def test_predict_refuses_what_is_not_text() -> None:
    with pytest.raises(ValidationFailed, match="must be a string, not int"):
        default_classifier().predict(42)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- red flags

# Written for this test, none of them in messages.csv: recall must be 100 %.
RED_FLAG_PHRASINGS = [
    ("胸口那里像被人攥住一样疼，出了一身的汗", "chest_pain"),
    ("我爸说心口疼得厉害，还往左胳膊窜", "chest_pain"),
    ("半夜胸痛醒了，现在还疼", "chest_pain"),
    ("胸闷得慌，后背全湿了，冷汗直冒", "chest_tightness_with_sweating"),
    ("一躺下就上不来气，只能坐着睡", "breathing_difficulty"),
    ("我妈喘不过气来了，说话一句一句断开", "breathing_difficulty"),
    ("孩子他爸呼吸困难，脸色发青", "breathing_difficulty"),
    ("穿刺的地方一直往外渗血，纱布换了三块都湿透了", "heavy_bleeding"),
    ("刀口出血不止怎么办！！", "heavy_bleeding"),
    ("奶奶突然嘴歪了，喝水往外漏", "stroke_signs"),
    ("老伴说话突然含糊不清，右边胳膊抬不起来", "stroke_signs"),
    ("我爸早上起来半边身子不能动了", "stroke_signs"),
    ("我妈刚才在厨房突然昏倒了", "loss_of_consciousness"),
    ("叫了半天都叫不醒，呼吸还有", "loss_of_consciousness"),
    ("活着太累了，真的不想活了", "suicidal_ideation"),
    ("我想自杀，撑不住了", "suicidal_ideation"),
    ("天天想着一了百了，别管我了", "suicidal_ideation"),
    ("打完针嗓子肿得说不出话，喘不上气", "anaphylaxis"),
    ("吃了新药以后舌头肿起来了", "anaphylaxis"),
    ("高烧39.8度，人迷迷糊糊的叫不太应", "high_fever_with_confusion"),
    ("今天拉的大便黑乎乎的，像沥青", "gastrointestinal_bleeding"),
    ("早上吐了一口血，颜色发黑", "gastrointestinal_bleeding"),
    ("心慌得厉害，眼前发黑，要晕过去了", "palpitations_with_faintness"),
    ("我爸突然全身抽搐，叫不醒", "seizure"),
    ("突然头痛欲裂，吐了两次", "sudden_severe_headache"),
    ("胸痛😭😭怎么办", "chest_pain"),
    ("医生我胸口疼🙏出汗", "chest_pain"),
    ("mum has really bad chest pain and feels sick", "chest_pain"),
    ("I think I'm having a heart attack", "chest_pain"),
    ("crushing pain in the middle of my chest", "chest_pain"),
    ("chest feels tight and I'm drenched in sweat", "chest_tightness_with_sweating"),
    ("he's struggling to breathe and can't finish a sentence", "breathing_difficulty"),
    ("I cant breathe lying down", "breathing_difficulty"),
    ("the groin site is bleeding heavily", "heavy_bleeding"),
    ("blood keeps pouring out of the wound and won't stop", "heavy_bleeding"),
    ("dad's face looks droopy on the left and he is slurring", "stroke_signs"),
    ("my wife suddenly can't lift her right arm", "stroke_signs"),
    ("grandpa passed out on the stairs", "loss_of_consciousness"),
    ("she's unresponsive, please help", "loss_of_consciousness"),
    ("I want to kill myself", "suicidal_ideation"),
    ("honestly I'd be better off dead", "suicidal_ideation"),
    ("my throat is swelling up after the injection", "anaphylaxis"),
    ("lips and tongue swelling after the new pill", "anaphylaxis"),
    ("high fever and he's confused and not making sense", "high_fever_with_confusion"),
    ("I've been throwing up blood", "gastrointestinal_bleeding"),
    ("passing black tarry stools since this morning", "gastrointestinal_bleeding"),
    ("my son is having a seizure", "seizure"),
    ("worst headache of my life came on suddenly", "sudden_severe_headache"),
]

NEGATED_PHRASINGS = [
    "没有胸痛，就是腿有点酸",
    "现在不胸闷了，也没出汗",
    "没有呼吸困难，睡得挺好",
    "伤口没有出血，就是有点痒",
    "没有说话不清，也没有口角歪斜",
    "没有晕倒过，精神还可以",
    "从来没想过自杀，就是心情不太好",
    "胸痛已经好了，谢谢关心",
    "最近没有再出现胸痛",
    "吃药后喉咙没有肿，就是有点痒",
    "大便颜色正常，不是黑色的",
    "没有胸痛",
    "no chest pain anymore",
    "I don't have any chest pain or shortness of breath",
    "no bleeding from the wound",
    "never had thoughts of suicide",
    "no slurred speech or facial droop",
    "the chest pain has gone completely",
    "denies chest pain",
    "without any chest pain today",
    "I'm not suicidal, just tired",
    "no black stools",
]


def test_the_red_flag_phrasings_are_not_training_data() -> None:
    assert TEXTS.isdisjoint(text for text, _ in RED_FLAG_PHRASINGS)
    assert TEXTS.isdisjoint(NEGATED_PHRASINGS)
    languages = collections.Counter(detect_language(text) for text, _ in RED_FLAG_PHRASINGS)
    assert languages["zh-CN"] >= 20
    assert languages["en"] >= 20


@pytest.mark.parametrize(("text", "flag"), RED_FLAG_PHRASINGS)
def test_a_red_flag_means_emergency_l3_and_no_automatic_answer(text: str, flag: str) -> None:
    result = triage(text)

    assert flag in result.red_flags
    assert result.urgency is Priority.EMERGENCY
    assert result.suggested_tier is Tier.L3
    assert result.clinical
    assert result.knowledge_answer is None


@pytest.mark.parametrize("text", NEGATED_PHRASINGS)
def test_a_negated_symptom_raises_no_red_flag(text: str) -> None:
    result = triage(text)

    assert result.red_flags == []
    assert result.urgency is not Priority.EMERGENCY


@pytest.mark.parametrize(
    "text",
    [
        "胸痛好了一点，但还是有",  # better is not gone
        "胸痛已经好了，今天又开始了",  # it came back
        "不知道是不是胸痛",  # a question, not a denial
        "没吃药就胸痛",  # the negation is about the pills
        "the chest pain went away but came back tonight",
    ],
)
def test_what_only_looks_like_a_negation_still_fires(text: str) -> None:
    assert triage(text).red_flags == ["chest_pain"]


def test_a_danger_sign_makes_a_non_clinical_message_clinical() -> None:
    result = triage("停车场太难找车位了，我爸在停车场突然晕倒了")

    assert result.red_flags == ["loss_of_consciousness"]
    assert result.clinical
    assert result.category in CLINICAL_CATEGORIES


def test_a_red_flag_wins_over_a_routine_question() -> None:
    result = triage("什么时候可以洗澡？另外今天胸口疼得厉害")

    assert result.red_flags == ["chest_pain"]
    assert result.knowledge_answer is None
    assert result.suggested_tier is Tier.L3


def test_a_broken_lexicon_names_the_file_the_sign_and_the_field(tmp_path: Path) -> None:
    path = tmp_path / "red_flags.yaml"
    path.write_text(
        "negation:\n  zh-CN: {before: [没有]}\n  en: {before: ['no']}\n"
        "red_flags:\n"
        "  - id: chest_pain\n    description: x\n    terms: {zh-CN: [胸痛]}\n"
        "  - id: parking_rage\n    description: x\n    category: parking\n"
        "    terms: {zh-CN: [停车]}\n",
        encoding="utf-8",
    )

    with pytest.raises(ValidationFailed) as error:
        RedFlagLexicon.load(path)

    message = str(error.value)
    assert str(path) in message
    assert "red_flags[1] (parking_rage)" in message
    assert "must be a clinical one" in message


# --------------------------------------------------------------------------- urgency and tiers


@pytest.mark.parametrize(
    ("text", "signs"),
    [
        ("今天血压185/115，头胀", ["blood_pressure_high"]),
        ("bp 82/50 and dizzy", ["blood_pressure_low"]),
        ("体温38.9，浑身发冷", ["fever"]),
        ("空腹血糖2.8，手抖", ["glucose_low"]),
        ("blood sugar 21 this morning", ["glucose_high"]),
        ("心跳一分钟130多下", ["heart_rate_abnormal"]),
        ("血压130/80，体温36.5，血糖6.1", []),
        ("每天走30分钟，血糖控制得还行", []),
    ],
)
def test_vital_signs_written_in_the_text(text: str, signs: list[str]) -> None:
    assert abnormal_vitals(text) == signs


@pytest.mark.parametrize(
    "text",
    [
        "今天血压139/85",
        "血压130/80，还可以吧",
        "没有不舒服，一切都好",
        "血糖空腹6.2",
        "体温36.8，正常",
        "没有发烧，伤口也不红",
        "bp 128/78 this morning",
        "sugar was 6.5 before breakfast",
    ],
)
def test_a_normal_reading_is_routine(text: str) -> None:
    result = triage(text)

    assert result.urgency is Priority.ROUTINE
    assert result.suggested_tier is not Tier.L3


@pytest.mark.parametrize(
    "text",
    [
        "今天量体温38.8度",
        "脚肿得鞋都穿不上了，这两天体重多了三斤",
        "测血糖只有3.2，心慌出汗",
        "左小腿突然又肿又痛",
        "吃了新的药身上起了好多红疹子",
        "在家摔了一跤，髋部疼得起不来",
        "医院打电话说我的化验结果危急值，让我马上回去",
        "my wound has gone red and there's pus coming out",
        "I ran out of clopidogrel three days ago",
        "heart rate is 135 and won't settle",
    ],
)
def test_a_warning_sign_is_urgent_and_goes_to_the_doctor_tier(text: str) -> None:
    result = triage(text)

    assert result.urgency is Priority.URGENT
    assert result.clinical
    assert result.suggested_tier is Tier.L3
    assert result.knowledge_answer is None


def test_an_urgent_clinical_message_goes_to_the_doctor_tier() -> None:
    result = triage("伤口这两天又红又肿，还流脓，发烧38.5")

    assert result.urgency is Priority.URGENT
    assert result.suggested_tier is Tier.L3
    assert result.red_flags == []
    assert result.knowledge_answer is None


def test_a_routine_clinical_question_without_a_sure_answer_goes_to_the_nurse() -> None:
    result = triage("最近晚上老是出汗，不知道是怎么回事")

    assert result.clinical
    assert result.urgency is Priority.ROUTINE
    assert result.suggested_tier is Tier.L2


def test_a_routine_question_the_knowledge_base_answers_stays_at_l1() -> None:
    result = triage("请问支架以后那个双抗的药一共要吃多久啊")

    assert result.category == "medication"
    assert result.suggested_tier is Tier.L1
    assert result.knowledge_answer is not None
    assert result.knowledge_answer.id == "antiplatelet-duration"
    assert "不要自己停药" in result.knowledge_answer.answer


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("那个护士说话特别难听，我问一句她就吼", "staff_attitude"),
        ("病房厕所好几天没人打扫，臭得不行", "environment"),
        ("the car park charges are ridiculous", "parking"),
        ("医院的饭又冷又咸", "food"),
    ],
)
def test_complaints_go_to_the_owning_department_at_l2(text: str, category: str) -> None:
    result = triage(text)

    assert result.category == category
    assert not result.clinical
    assert result.suggested_tier is Tier.L2
    assert result.urgency is Priority.ROUTINE


def test_praise_is_thanked_automatically() -> None:
    result = triage("非常感谢心内科的护士们，照顾得太好了👍")

    assert result.category == "praise"
    assert result.suggested_tier is Tier.L1


def test_a_complaint_ticket_is_never_answered_automatically() -> None:
    question = "医院停车场在哪里，怎么收费？"
    assert triage(question).knowledge_answer is not None

    result = triage(question, source=TicketSource.COMPLAINT)

    assert result.knowledge_answer is None
    assert result.suggested_tier is Tier.L2


# --------------------------------------------------------------------------- languages and input


def test_mixed_chinese_and_emoji() -> None:
    result = triage("医生😊 请问复诊怎么预约呀🙏🙏")

    assert result.language == "zh-CN"
    assert result.category == "appointment"
    assert result.knowledge_answer is not None
    assert "复诊" in result.knowledge_answer.answer


def test_english() -> None:
    result = triage("Hi, how long after the stent before I'm allowed to drive?")

    assert result.language == "en"
    assert result.category == "rehabilitation"
    assert result.knowledge_answer is not None
    assert result.knowledge_answer.id == "driving-after-stent"
    assert "120" in result.knowledge_answer.answer


def test_a_known_locale_wins_over_detection() -> None:
    result = triage("复诊怎么预约", locale="en")

    assert result.language == "en"
    assert result.knowledge_answer is not None
    assert "appointment" in result.knowledge_answer.answer.lower()


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("伤口有点痒", "zh-CN"),
        ("请问CT结果出来了吗", "zh-CN"),
        ("医生 my wound is red and sore", "en"),
        ("ok 好的", "zh-CN"),
        ("", "zh-CN"),
    ],
)
def test_language_is_detected_by_script(text: str, language: str) -> None:
    assert detect_language(text) == language


@pytest.mark.parametrize("text", ["", "   ", "\n\t ", "👍👍", "……"])
def test_empty_text_is_other_with_no_confidence(text: str) -> None:
    result = triage(text)

    assert result.category == "other"
    assert result.confidence == 0
    assert result.red_flags == []
    assert result.urgency is Priority.ROUTINE
    assert result.knowledge_answer is None


def test_a_very_long_message_is_still_scanned_to_the_end() -> None:
    text = "今天天气不错，出去走了走。" * 400 + "刚才突然胸口疼得厉害"

    result = triage(text)

    assert result.red_flags == ["chest_pain"]


def test_the_same_message_always_gets_the_same_triage() -> None:
    texts = ["伤口有点红，正常吗", "my knee swells after the exercises", "收费处多收了我的钱"]

    first = [triage(text).model_dump() for text in texts]
    second = [triage(text).model_dump() for text in texts]

    assert first == second


def test_classify_is_fast_enough_for_the_workload_simulator() -> None:
    requests = [TriageRequest(text=row.text) for row in ROWS]
    classify(requests[0])  # the model is trained and cached on first use

    started = time.perf_counter()
    for request in requests:
        classify(request)
    per_second = len(requests) / (time.perf_counter() - started)
    print(f"classify: {per_second:,.0f} messages/second")

    assert per_second > 1000


# --------------------------------------------------------------------------- the hook


def test_the_builtin_plugin_triages_through_a_real_plugin_manager() -> None:
    plugins = Plugins.load(
        entrypoints=False, builtins=False, extra=[("tickets", suifang.tickets.builtin)]
    )

    result = plugins.triage(TriageRequest(text="刀口流黄水，还有点臭味，正常吗"))

    assert result.category == "wound_care"
    assert result.clinical
    assert result.urgency is Priority.URGENT
    assert result.suggested_tier is Tier.L3


def test_a_hospital_plugin_registered_later_answers_first() -> None:
    class HospitalTriage:
        @hookimpl
        def suifang_triage(self, request: TriageRequest) -> TriageResult:
            return TriageResult(category="other", urgency=Priority.ROUTINE, confidence=1.0)

    plugins = Plugins.load(
        entrypoints=False,
        builtins=False,
        extra=[("tickets", suifang.tickets.builtin), ("hospital", HospitalTriage())],
    )

    assert plugins.triage(TriageRequest(text="胸口疼")).category == "other"
