"""The danger lexicon: concepts in patients' own words, the cues around them, numbers, slips."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from suifang.core.errors import ValidationFailed
from suifang.tickets.danger import DangerDetector, default_detector, load_lexicon, normalize
from suifang.tickets.vitals import readings, spell_out_numbers

DETECTOR = default_detector()
SHIPPED = Path(__file__).parents[2] / "templates" / "triage" / "red_flags.yaml"


def level(text: str, pathway: str | None = None) -> str | None:
    return DETECTOR.assess(text, pathway_id=pathway).level


def concepts(text: str, pathway: str | None = None) -> list[str]:
    return DETECTOR.assess(text, pathway_id=pathway).concepts


# --------------------------------------------------------------------------- concepts


@pytest.mark.parametrize(
    ("text", "concept"),
    [
        ("胸口特别闷，出了一身冷汗", "chest_pain"),
        ("my chest feels so tight, like an elephant sitting on it", "chest_pain"),
        ("坐着都喘不上气，晚上不能平躺", "breathlessness"),
        ("his lips are going blue", "breathlessness"),
        ("刀口一直往外渗血，纱布都湿透了", "heavy_bleeding"),
        ("the puncture site won't stop bleeding", "heavy_bleeding"),
        ("我爸嘴巴歪了，右手也抬不起来", "stroke"),
        ("mum's face is drooping on one side and her speech is slurred", "stroke"),
        ("我妈刚才晕倒了，叫不醒", "syncope"),
        ("he collapsed in the kitchen", "syncope"),
        ("活着就是拖累孩子，药都攒好了", "suicidality"),
        ("I've been saving up my sleeping pills, I'm tired of living", "suicidality"),
        ("打完胰岛素浑身冒冷汗，手抖，人有点糊涂", "hypoglycaemia"),
        ("小便是红的，还有血块", "haematuria"),
        ("吐了好多咖啡色的东西", "haematemesis"),
        ("大便黑得像柏油一样", "melaena"),
        ("吃了新药以后嘴唇肿了，喉咙发紧", "anaphylaxis"),
        ("剖腹产回家第五天发烧了", "postop_fever"),
        ("肚子疼得受不了，在床上打滚", "severe_pain"),
        ("我爸突然抽搐，口吐白沫", "seizure"),
        ("突然头疼得像要炸开，这辈子最疼的一次", "severe_headache"),
        ("发高烧，人迷迷糊糊的说胡话", "sepsis_confusion"),
        ("心跳得好快好乱，眼前发黑差点晕倒", "palpitations_with_faintness"),
    ],
)
def test_every_emergency_concept_is_recognised_in_both_languages(text: str, concept: str) -> None:
    assessment = DETECTOR.assess(text)
    assert assessment.level == "emergency", (text, assessment.findings)
    assert concept in assessment.concepts, (text, assessment.concepts)


@pytest.mark.parametrize(
    "text",
    [
        "胸口特别闷",  # an intensifier between site and symptom
        "胸口真的是好闷啊",  # filler and particles
        "兄口闷得很",  # a homophone slip
        "my chset hurts so much",  # an English typo
        "胸口這幾天一直很悶",  # traditional characters
    ],
)
def test_words_between_and_slips_in_the_words_do_not_hide_chest_pain(text: str) -> None:
    assert "chest_pain" in concepts(text), text


# --------------------------------------------------------------------------- cues


@pytest.mark.parametrize(
    "text",
    [
        "没有胸痛，也没有气短",
        "no chest pain at all",
        "上个月胸痛过，放了支架以后再没疼过",
        "years ago I had a seizure, nothing since",
        "如果胸口疼应该怎么办？",
        "what should I do if my wound starts bleeding?",
    ],
)
def test_denied_past_and_hypothetical_danger_is_no_emergency(text: str) -> None:
    assert level(text) != "emergency", (text, DETECTOR.assess(text).findings)


def test_a_resolved_emergency_is_still_urgent_and_a_history_still_reaches_a_person() -> None:
    assert level("刚才胸口疼了十分钟，现在好了") == "urgent"
    assert level("去年胸口疼得厉害住过院，现在恢复得挺好") == "clinical"  # a person reads it


def test_a_past_cue_that_is_only_a_comparison_keeps_the_symptom_now() -> None:
    assert level("现在胸口闷痛，跟住院前那天的感觉一模一样") == "emergency"


def test_a_question_answered_no_at_once_denies_what_it_asked() -> None:
    assert level("pad soaked? nah, bleeding almost stopped now") != "emergency"


def test_mild_words_lower_a_concept_to_its_mild_level() -> None:
    assert level("胸口有点闷") == "urgent"
    assert level("伤口有一点点红") in ("clinical", None)


def test_the_pathway_gives_the_context_a_concept_needs() -> None:
    assert level("发烧38度5") == "urgent"
    assert level("发烧38度5", pathway="hip-replacement") == "emergency"
    assert level("手抖出汗心慌", pathway="diabetes") == "emergency"


def test_an_explanation_for_a_colour_is_believed_only_when_it_is_not_denied() -> None:
    assert level("吃了铁剂以后大便发黑") != "emergency"
    assert level("我没吃铁剂，大便黑得像柏油") == "emergency"


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("血糖2.8", "glucose", 2.8),
        ("血糖才二点八", "glucose", 2.8),
        ("BG 47 mg/dL", "glucose", 2.6),
        ("血糖都在六七之间", "glucose", 6.5),
        ("血糖试纸快用完了，今天测的二点八", "glucose", 2.8),
        ("刚测了一下才2.3mmol，手一直抖", "glucose", 2.3),
        ("高压一百九低压一百一", "systolic", 190),
        ("BP 185 over 110", "diastolic", 110),
        ("降压药吃着，刚量了一百九十五 一百一十", "systolic", 195),
        ("血氧88%", "spo2", 88),
        ("pulse 38 bpm", "heart_rate", 38),
        ("体温三十八度五", "temperature", 38.5),
        ("101.5F", "temperature", 38.6),
        ("burning up, 38.8, shivering", "temperature", 38.8),
        ("疼痛评分8分", "pain_score", 8),
        ("pain 9 outta 10", "pain_score", 9),
    ],
)
def test_readings_are_found_in_words_and_digits_with_units_converted(
    text: str, kind: str, value: float
) -> None:
    found = {(r.kind, round(r.value, 1)) for r in readings(normalize(text))}
    assert (kind, value) in found, (text, found)


@pytest.mark.parametrize(
    "text",
    [
        "吃了2片药",
        "住院3天",
        "7点测的血糖",
        "疼得十分厉害",
        "有一度很难受",
        "nobody checked her sugars for 2 whole days",
        "sugar checked 1 day after",
    ],
)
def test_counts_times_and_words_are_not_readings(text: str) -> None:
    assert readings(normalize(text)) == [], text


def test_a_number_in_mmol_is_a_blood_sugar_unless_another_analyte_is_named() -> None:
    assert not [r for r in readings(normalize("化验单上血钾3.2mmol/L")) if r.kind == "glucose"]
    assert not [r for r in readings(normalize("LDL 2.9 mmol/L now")) if r.kind == "glucose"]


@pytest.mark.parametrize(
    ("text", "concept"),
    [
        # Bleeding with faintness is a haemorrhage, whatever words carry the amount.
        ("生完孩子下面一直出血，人站都站不住了", "heavy_bleeding"),
        ("出血像开了水龙头一样", "heavy_bleeding"),
        # A racing or irregular heart described, not named, with near-fainting.
        ("心跳时快时慢的，眼前一阵一阵发黑", "palpitations_with_faintness"),
        ("心脏好像要从嗓子眼跳出来了，人快晕了", "palpitations_with_faintness"),
        # Suicidal intent said as a goodbye, a note, or a family better off.
        ("要是我不在了，家里人就轻松了", "suicidality"),
        ("遗书已经写好了", "suicidality"),
        ("以后不会再麻烦任何人了，后事都交代好了", "suicidality"),
        ("can't stop thinking about cutting again", "suicidality"),
        # Tuning set 7's misses: a plan said plainly, a burden "any more" with pills saved,
        # a mother's river, insulin pens all at once.
        ("体检说肺上有结节，我查了肯定是癌，不想拖累家里，已经想好怎么死了", "suicidality"),
        ("活着真没意思，我不想再拖累孩子们了，这些药我都攒着呢", "suicidality"),
        (
            "the baby would be better off with someone else. "
            "i keep thinking about walking into the river",
            "suicidality",
        ),
        (
            "whats the point anymore. I've got all my insulin pens here, "
            "if I do them all at once it ends",
            "suicidality",
        ),
        # Set 8's only miss: lost consciousness and woke up on the floor.
        ("我老公说眼前一黑就没了知觉，醒来发现自己躺在地上，额头磕了个大包", "syncope"),
        # Fever with "talk nonsense" is confusion.
        (
            "grandmother fever high 39.7, today she is sleepy sleepy, talk nonsense",
            "sepsis_confusion",
        ),
        # Pain so bad the patient cannot move at all.
        ("腰疼得一动都不能动", "severe_pain"),
        # Set 11's misses, all suicidality: thanks that close a farewell, with the means used;
        # sleeping and not waking; a lethal count asked as a question; "this life ends here";
        # an open window high up after a goodbye; a note's opening; joining the dead.
        ("谢谢医生护士这段时间的照顾，以后不用再随访我了，我把胰岛素全打进去了", "suicidality"),
        ("安眠药攒了一瓶，今晚想睡了就不醒了", "suicidality"),
        ("二甲双胍一次吃五十片是不是就能走了？我已经数好了", "suicidality"),
        ("我妈发朋友圈说这辈子就到这了大家保重，电话一直不接", "suicidality"),
        ("跟你们说声再见，窗户已经打开了，我住18楼", "suicidality"),
        (
            "By the time you read this I'll have taken everything in the medicine cabinet",
            "suicidality",
        ),
        (
            "he rang to say goodbye and that hes going to join mum. his pills are gone",
            "suicidality",
        ),
        # Set 12's misses, all suicidality: a jump thought over "a long time" (not a past
        # event); a deliberate crash for the insurance; a lethal count with "enough to go";
        # letters and "won't be here"; cuts with the blades at hand; a goodbye text and a bag
        # of old medicines.
        ("站在天台边上想了好久了，跳下去就不用再受罪了", "suicidality"),
        ("我想开车往墙上撞，保险金够孩子上学了", "suicidality"),
        (
            "he keeps saying he'll drive into a tree so the life insurance covers the mortgage",
            "suicidality",
        ),
        ("降压药都倒进一个袋子了，一百多粒，够我走了吧", "suicidality"),
        (
            "I won't be here next week. Wrote letters to my wife and son. Stop messaging.",
            "suicidality",
        ),
        ("the blades in the drawer keep calling me, want to do more than scratches", "suicidality"),
        (
            "mum texted love you all, her phone is off now and she took a bag of pills",
            "suicidality",
        ),
        # Blind set 15a (now tuning): a plan without the word, a means bought, joining the dead.
        ("I'm parked on the bridge. I keep thinking about just driving off it.", "suicidality"),
        ("天天睡不着，活着没有一点意义，昨天去买了根绳子，今晚家里没人", "suicidality"),
        ("everything fine except i dont want to be alive anymore, i have a plan", "suicidality"),
        (
            "Nana told the carer she's going to take all her tablets at once so she can go and "
            "be with grandad",
            "suicidality",
        ),
        ("can u tell my daughter i love her. on the ledge of the 20th floor", "suicidality"),
        # Blind set 17b: "last month" earlier in a run-on message does not date the pain now.
        (
            "my mum had a stint put in last month and for the last half hour shes got this "
            "crushing pain in her chset going up into her jaw and shes sweating buckets",
            "chest_pain",
        ),
        ("上个月放了支架，这两天胸口又疼得厉害，出冷汗", "chest_pain"),
    ],
)
def test_emergencies_described_without_their_textbook_words(text: str, concept: str) -> None:
    assert concept in concepts(text), (text, concepts(text))
    assert level(text) == "emergency"


def test_thanks_that_can_be_a_goodbye_reach_a_person_unless_the_writer_is_doing_well() -> None:
    # Alone, "thank you for everything" may be a farewell: a clinician the same day.
    assert level("thank you for everything") == "urgent"
    # With another goodbye, it is one: an emergency, even from someone who says they are fine.
    assert level("谢谢你们为我做的一切，以后不用再给我发消息了") == "emergency"
    assert level("I'm doing great now, thanks for everything, I've made my arrangements") == (
        "emergency"
    )
    # From a mother who says she and her baby are doing great, it is thanks.
    assert level("Baby and me both doing great, thank you for everything") is None


def test_asking_when_you_can_walk_is_not_a_lethal_dose_and_a_heart_attack_idiom_is_not_one() -> (
    None
):
    # 能走 is "able to walk" after a hip replacement; only with a lethal count is it dying.
    assert level("术后一个月是不是就能走了") is None
    assert (
        level("nearly had a heart attack when I saw the bill haha, what bp should I aim for")
        is None
    )


@pytest.mark.parametrize(
    "text",
    [
        "want to die of embarrassment asking, but when can we have sex after the stent?",
        "之前在医院低血糖晕过一次，现在兜里揣着糖，平时还要注意什么",
        "fainted once in hospital when they took blood, fine ever since. can I drive?",
        "I won't be here next week, visiting my daughter, can we move the call?",
        "吃了止痛药应该就不疼了吧？",
        "等号等得我想死，排了整整三个小时",
        "I nearly fainted when I saw the price of the new tablets 😂",
        "my dog is on the ledge of the window lol",
        "scared stiff my stent will block, cant stop googling, sleeping badly",
        "whats the wifi password in the outpatient building, my data is dying",
        "停车场排了一个多小时，差点气晕过去",
        "我妈有癫痫，吃药控制得很好，两年没犯过了，新开的降压药会不会有冲突",
    ],
)
def test_idioms_and_old_events_near_danger_words_are_not_emergencies(text: str) -> None:
    assert level(text) != "emergency", (text, concepts(text))


@pytest.mark.parametrize(
    "text",
    [
        # Leaving hospital is a discharge too; pus from a wound is another.
        "could someone show my husband how to change the dressing before discharge next time",
        "since my discharge the wound looks fine, dressing changed on Monday",
        # "Right as rain" closes what it follows.
        "had a dizzy spell last Thursday, nearly passed out in the kitchen, right as rain since",
        # A plan denied, in ordinary English and in Nigerian pidgin.
        "low mood since the op but I don't have any plan to hurt myself",
        "I dey feel down small but I no get any plan to harm myself",
        # "Slid off the bed onto my bottom" is a slip, not a faint, and days ago is the past.
        "I slid off the bed onto my bottom a couple days ago, hip feels fine, walking ok",
    ],
)
def test_words_that_date_deny_or_mean_something_else_keep_it_from_an_emergency(
    text: str,
) -> None:
    assert level(text) != "emergency", (text, DETECTOR.assess(text).findings)


def test_a_blood_pressure_written_with_over_is_a_reading_not_a_limit() -> None:
    # "196 over 118" is one pressure; and a full stop ends the sentence that said an earlier
    # reading was "normal for me", so nothing here asks about a threshold.
    text = (
        "morning was 150/90 which is normal for me. this evening its 196 over 118 and ive "
        "got a pounding headache and my vision's gone blurry. what time is my clinic"
    )
    assert level(text) == "emergency", concepts(text)
    assert "critical_vitals" in concepts(text)


def test_thanks_that_look_ahead_are_not_a_goodbye() -> None:
    assert level("Thanks for everything. Maybe the nurses could write the doses on a card?") is None
    assert level("感谢护士们这段时间的照顾。建议出院前给老人示范一下助行器怎么用") is None
    assert level("thank you for everything. I won't need you any more") in ("urgent", "emergency")


@pytest.mark.parametrize(
    ("text", "concept"),
    [
        ("疼痛：无法忍受，胸口压着疼，一身冷汗", "chest_pain"),
        ("chest pain: no relief from the spray, crushing and sweating", "chest_pain"),
        (
            "no history of epilepsy at all, but my husband is having convulsions right now",
            "seizure",
        ),
        (
            "上个月那次心口疼是胃的毛病，这回不一样，心口像被攥住一样疼，往后背窜，满头大汗",
            "chest_pain",
        ),
    ],
)
def test_a_denial_or_a_history_does_not_reach_past_what_it_is_about(
    text: str, concept: str
) -> None:
    assert level(text) == "emergency", (text, DETECTOR.assess(text).findings)
    assert concept in concepts(text)


@pytest.mark.parametrize(
    "text",
    [
        # An onset or an operation dated in the same clause is when it began, not the past.
        "I was discharged 2 days ago and I cant breathe",
        "3 days ago I had my stent put in and I have crushing chest pain",
        "crushing chest pain since last tuesday",
        "3天前开始胸口剧痛",
        "术后第一周伤口大出血止不住",
        "白天前胸剧痛出冷汗",
        # A denial after its item, then a correction or a return ("checklist" answers are
        # read as written: rewriting "胸痛：无" as "无胸痛" hid what came after it).
        "胸痛：无。刚才又开始了，很厉害",
        "Chest pain: no. Update: it started 10 minutes ago, crushing",
        "Bleeding - no, it's pouring out",
        # An improvement denied, a sentence that ends in "no".
        "胸痛好转：无",
        "chest pain any better: no",
        "i have crushing chest pain no",
        "胸口剧痛 没有",
        # An abbreviation's full stop is not the end of the sentence a reading is in.
        "Sats. 82",
        "sugar approx. 1.8 and sweaty",
    ],
)
def test_emergencies_a_date_a_checklist_or_an_abbreviation_must_not_hide(text: str) -> None:
    assert level(text) == "emergency", (text, DETECTOR.assess(text).findings)


@pytest.mark.parametrize(
    "text",
    [
        "thank you for everything. see you in heaven",
        "谢谢你们为我做的一切，下次不用再来看我了",
        "thank you for everything, next time you wont need to see me",
    ],
)
def test_a_goodbye_that_mentions_next_time_still_reaches_a_person(text: str) -> None:
    assert level(text) in ("urgent", "emergency"), (text, DETECTOR.assess(text).findings)


def test_a_denied_plan_with_low_mood_still_reaches_a_person_the_same_day() -> None:
    assert level("feeling hopeless lately but no plan to harm myself") == "urgent"


@pytest.mark.parametrize(
    "text",
    [
        "低血糖要怎么预防啊？我现在血糖挺好的",
        "怎么防止低血糖 出门要带点什么",
        "how do I prevent a stroke after the stent?",
        "我爸60岁那年心梗走的，我要注意什么",
        "my dad died at 58 of a heart attack, should I get my heart checked?",
        "family history of stroke, what should I eat",
    ],
)
def test_prevention_questions_and_a_relatives_history_are_not_emergencies(text: str) -> None:
    assert level(text) != "emergency", (text, DETECTOR.assess(text).findings)


@pytest.mark.parametrize(
    ("text", "concept"),
    [
        ("my dad is 70 and his face is drooping right now, he cant lift his arm", "stroke"),
        ("sugar at 40 mg/dl, shaking and sweating", "hypoglycaemia"),
        ("我妈今年78岁，刚才突然嘴歪了说话说不清楚", "stroke"),
        ("she's at 41 and acting weird like she doesn't know where she is", "acute_confusion"),
        # Found in review: a prevention word or an age-like number must not hide what follows.
        ("I'm on prevention meds but now crushing chest pain and can't breathe", "chest_pain"),
        ("stroke prevention nurse rang, he is slurring his words now, face drooping", "stroke"),
        ("I have crushing chest pain and sweating how do i avoid a heart attack", "chest_pain"),
        ("我今年60岁时不时胸口剧痛，出冷汗", "chest_pain"),
        ("when i was 20 minutes into my walk i got crushing chest pain and sweating", "chest_pain"),
    ],
)
def test_an_age_or_a_reading_near_an_emergency_does_not_date_it(text: str, concept: str) -> None:
    assert concept in concepts(text), DETECTOR.assess(text)
    assert level(text) == "emergency"


def test_the_state_now_blanks_only_what_is_denied_past_or_hypothetical() -> None:
    assessment = DETECTOR.assess("not short of breath at all now, the cough is almost gone")
    assert "short of breath" not in assessment.now
    assert "cough" in assessment.now
    assert "胸痛" in DETECTOR.assess("胸痛得厉害").now


def test_a_low_sugar_meal_is_food_and_feeling_low_sugar_is_a_hypo() -> None:
    assert level("Ordered the low sugar meal 3 days in a row, got fruit cake every time") is None
    assert level("订的低糖餐送来的是甜粥") is None
    # "feeling low" is a mood, but "feeling low sugar" is the blood sugar.
    assert "hypoglycaemia" in concepts("feeling low sugar and shaky", "diabetes")
    assert level("feeling low sugar and shaky", "diabetes") == "emergency"


def test_below_a_number_is_below_it() -> None:
    (reading,) = [r for r in readings(normalize("血压八十都不到")) if r.kind == "systolic"]
    assert reading.value < 80
    assert level("血压八十都不到，人没力气") == "emergency"


def test_a_threshold_question_is_not_a_reading_of_the_patient() -> None:
    assert level("血糖低于3.9怎么办？") != "emergency"
    assert level("血糖2.9，手抖") == "emergency"


def test_an_old_reading_is_superseded_by_the_one_now() -> None:
    assert level("pain was 9/10 right after surgery but now 2/10, happy days") != "emergency"


def test_numbers_in_words_are_spelled_out_only_after_a_measurement() -> None:
    assert spell_out_numbers("血压一百八") == "血压180"
    assert spell_out_numbers("一塌糊涂，十分感谢") == "一塌糊涂，十分感谢"


# --------------------------------------------------------------------------- homophone slips


@pytest.mark.parametrize(
    ("text", "concept"),
    [("牙龈出雪止不住", "heavy_bleeding"), ("兄口通得厉害，出了一身冷汗", "chest_pain")],
)
def test_homophone_slips_are_read_as_the_word_they_sound_like(text: str, concept: str) -> None:
    assert concept in concepts(text), (text, DETECTOR.assess(text).findings)


@pytest.mark.parametrize(
    "text",
    [
        "我儿子在国外留学",  # 留学 sounds like 流血 but is a word
        "药什么时候运到",  # 运到 / 晕倒
        "量也少了",  # 少了 / 烧了: the commoner reading wins
        "护土说让家属自己弄",  # 护土 is a slip for 护士, not 糊涂
        "大腿根穿刺那个地方",  # 穿刺 after a site is not 喘
    ],
)
def test_real_words_that_sound_like_danger_stay_what_they_are(text: str) -> None:
    assert level(text) is None, (text, DETECTOR.assess(text).findings)


# --------------------------------------------------------------------------- the file


def test_an_administrator_adds_a_phrase_without_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = DETECTOR.assess("我奶奶打摆子打得停不下来，还在说糊涂话")
    assert "seizure" not in before.concepts
    text = SHIPPED.read_text(encoding="utf-8").replace(
        "  seizure:\n    kind: symptom\n    zh-CN: [",
        "  seizure:\n    kind: symptom\n    zh-CN: [打摆子打得停不下来, ",
        1,
    )
    (tmp_path / "red_flags.yaml").write_text(text, encoding="utf-8")
    added = DangerDetector.load(tmp_path / "red_flags.yaml")
    assert "seizure" in added.assess("我奶奶打摆子打得停不下来，还在说糊涂话").concepts


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (("      - [chest, pain]\n", "      - [chest, pains]\n"), "unknown group 'pains'"),
        (("    level: emergency\n", "    level: critical\n"), "level"),
        (("version: 2", "version: 3"), "version"),
        (("  chest:\n    kind: site", "  chest:\n    kind: organ"), "kind"),
    ],
)
def test_a_broken_lexicon_is_refused_with_file_line_and_reason(
    tmp_path: Path, edit: tuple[str, str], problem: str
) -> None:
    path = tmp_path / "red_flags.yaml"
    path.write_text(SHIPPED.read_text(encoding="utf-8").replace(*edit, 1), encoding="utf-8")
    with pytest.raises(ValidationFailed) as raised:
        load_lexicon(path)
    message = str(raised.value)
    assert f"{path}:" in message, message
    assert problem in message, message


def test_a_pattern_naming_an_unknown_group_is_reported_at_its_own_line(tmp_path: Path) -> None:
    text = SHIPPED.read_text(encoding="utf-8").replace(
        "      - [chest, pain]\n", "      - [chest, pains]\n", 1
    )
    line = text.splitlines().index("      - [chest, pains]") + 1
    path = tmp_path / "red_flags.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValidationFailed) as raised:
        load_lexicon(path)
    assert f"{path}:{line}: concepts[0] (chest_pain).match[0]: unknown group 'pains'" in str(
        raised.value
    )


def test_a_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "red_flags.yaml"
    path.write_text("version: 2\ngroups: [unclosed\n", encoding="utf-8")
    with pytest.raises(ValidationFailed, match=r"red_flags\.yaml:\d+: not valid YAML"):
        load_lexicon(path)


# --------------------------------------------------------------------------- the commands


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "suifang.core.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_triage_try_shows_the_words_their_status_and_the_concepts() -> None:
    result = run_cli("triage", "try", "没有胸痛，就是胸口特别闷，一身冷汗")
    assert result.returncode == 0, result.stderr
    assert "emergency" in result.stdout
    assert "chest_pain" in result.stdout


def test_triage_evaluate_lists_every_kind_of_miss_by_line(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.csv"
    corpus.write_text(
        "text,language,class,concept,department,kb_topic,pathway,discharge_department,note\n"
        # Labelled on purpose so that each kind of miss occurs once.
        "复查需要空腹吗？,zh-CN,clinical,fasting,,,pci,cardiology,\n"
        "胸口压着疼，一身冷汗，喘不上气,zh-CN,routine,,,none,pci,cardiology,\n"
        "谢谢医生护士，恢复得很好,zh-CN,emergency,chest_pain,,,pci,cardiology,\n",
        encoding="utf-8",
    )
    result = run_cli("triage", "evaluate", str(corpus), "--misses")
    assert result.returncode == 0, result.stderr
    assert "clinical at L1 (clinical; question), line 2: 复查需要空腹吗？" in result.stdout
    assert "false emergency (routine; " in result.stdout
    assert "line 3: 胸口压着疼" in result.stdout
    assert "missed emergency (chest_pain), line 4:" in result.stdout


def test_triage_check_names_the_line_of_a_broken_file(tmp_path: Path) -> None:
    (tmp_path / "red_flags.yaml").write_text(
        SHIPPED.read_text(encoding="utf-8").replace(
            "    level: emergency\n", "    level: soon\n", 1
        ),
        encoding="utf-8",
    )
    result = run_cli("triage", "check", str(tmp_path))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert f"{tmp_path / 'red_flags.yaml'}:" in result.stderr
    assert "level" in result.stderr
    good = run_cli("triage", "check")
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith("ok: ")


def test_a_hospitals_own_lexicon_is_used_by_the_triage(tmp_path: Path) -> None:
    text = SHIPPED.read_text(encoding="utf-8").replace(
        "  seizure:\n    kind: symptom\n    zh-CN: [",
        "  seizure:\n    kind: symptom\n    zh-CN: [犯羊角疯犯得厉害, ",
        1,
    )
    (tmp_path / "red_flags.yaml").write_text(text, encoding="utf-8")
    before = run_cli("triage", "try", "我爸在屋里犯羊角疯犯得厉害")
    after = run_cli(
        "triage", "try", "我爸在屋里犯羊角疯犯得厉害", env={"SUIFANG_TRIAGE_DIR": str(tmp_path)}
    )
    assert after.returncode == 0, after.stderr
    assert "seizure" in after.stdout
    assert before.stdout != after.stdout
