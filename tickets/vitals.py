"""Measurements a patient typed: glucose, blood pressure, SpO2, heart rate, temperature, pain.

Patients write numbers every way there is — 血糖2.8, 血糖才二点八, sugar 2.6, BG 47 mg/dL,
高压一百九低压一百一, BP 185 over 110, 血氧88%, spo2 87, 心率一百五, pulse 38 bpm, 三十八度五,
38度5, 101.5F, pain 9/10, 疼痛评分8分. :func:`readings` finds them in normalised text
(:func:`suifang.tickets.danger.normalize`, which calls :func:`spell_out_numbers` first) and
converts units (mg/dL → mmol/L, °F → °C); the limits that make a reading urgent or an
emergency are data, under ``vitals`` in ``templates/triage/red_flags.yaml``.

A number is a reading only when a measurement word governs it: "吃了2片" and "住院3天" are
not readings, "7点测的血糖" is a time, and "血糖低于3.9怎么办" is a question about a
threshold, not a value (``Reading.threshold_question``).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Literal

import cn2an

__all__ = ["Reading", "VitalKind", "readings", "spell_out_numbers"]

VitalKind = Literal[
    "glucose", "systolic", "diastolic", "spo2", "heart_rate", "temperature", "pain_score"
]


@dataclass(frozen=True, slots=True)
class Reading:
    kind: VitalKind
    value: float
    """In mmol/L, mmHg, %, per minute, °C or 0–10."""
    start: int
    end: int
    threshold_question: bool = False


# Chinese numerals are spelled out only right after a measurement word: 十分 (very), 一点
# (a little) and 一直 (all along) elsewhere stay words.
_NUMERAL = "零〇一二两三四五六七八九十百千点几"
_MEASURE_WORDS = (
    "血糖|血压|高压|低压|收缩压|舒张压|体温|烧到|发烧到|烧了|发烧|高烧|发热|心率|心跳|脉搏|血氧|饱和度|"
    "氧饱和度|评分|打分|打分的话|降到|掉到|升到|涨到|测了|量了|测出来|测的|测得|测出|量的|显示"
)
# Between the word and the number: a few characters, including words that hold a numeral
# (体温一直在三十八, 低压有点高 九十二).
_GAP = rf"(?:一直|有点|一般|[^\d{_NUMERAL}，。！？,.!?;；\n]){{0,4}}?"
_SPELLED = re.compile(
    rf"((?:{_MEASURE_WORDS}){_GAP})(?!一直|一般)([{_NUMERAL}]+)(度[一二三四五六七八九])?(?=(分|度)?)"
)
_DIGIT_OF = dict(zip("一二三四五六七八九", "123456789", strict=True))
# The second number of a pair (一百九十五 一百一十, 一百八比一百) and a pain score (疼，大概九分;
# not 疼得十分厉害, where 十分 is "very").
_SECOND = re.compile(rf"(?<=\d)(\s*(?:[/／,，]|比|到|\s)\s*)([{_NUMERAL}]{{2,}})")
# A temperature in words with its unit: 三十九度左右 (not 一度: once).
_DEGREES = re.compile(rf"()([{_NUMERAL}]{{2,}})(?=度)")
_PAIN_SCORE = re.compile(
    rf"((?:疼|痛)[^\d{_NUMERAL}。！？!?;；\n]{{0,8}}?)([一二三四五六七八九十]+)(?=分(?![厉严难疼痛不的地明重]))"
)


def _spelled_value(numeral: str, unit: str = "") -> str | None:
    # A lone character (一塌糊涂, 一直) is a word unless a unit follows (打分十分, 三十九度),
    # and a run ending in 点 (一点: a little) always is.
    if (
        (len(numeral) < 2 and unit not in ("分", "度"))
        or numeral.endswith("点")
        or numeral.startswith("点")
    ):
        return None
    approximate = _approximate(numeral)
    if approximate is not None:
        return f"{approximate:g}"
    # 三点几 is "three point something": half way is the honest guess.
    numeral = numeral.replace("几", "五") if "点" in numeral else numeral.replace("几", "")
    if not numeral:
        return None
    try:
        value = cn2an.cn2an(numeral, "smart")
    except (ValueError, KeyError, TypeError, IndexError):
        return None
    return f"{value:g}" if isinstance(value, float) else str(value)


_RANGE = re.compile(r"^(.*?)([一二三四五六七八])([二三四五六七八九])(十?)$")
_ONES = "一二三四五六七八九"


def _approximate(numeral: str) -> float | None:
    """Two neighbouring digits are a range, taken at its middle: 六七 → 6.5, 六七十 → 65,
    三十八九 → 38.5, 一百八九十 → 185."""
    match = _RANGE.match(numeral)
    if match is None:
        return None
    head, low, high, tens = match.groups()
    if _ONES.index(high) != _ONES.index(low) + 1 or (head and not head.endswith(("十", "百"))):
        return None
    middle = _ONES.index(low) + 1.5
    base = 0.0
    if head:
        try:
            base = float(cn2an.cn2an(head, "smart"))
        except (ValueError, KeyError, TypeError, IndexError):
            return None
    return base + middle * (10 if tens else 1)


def spell_out_numbers(text: str) -> str:
    """``血压一百八`` → ``血压180``, ``体温三十八度五`` → ``体温38.5度``; nothing else changes."""
    if not any(char in _NUMERAL for char in text):
        return text

    def replace(match: re.Match[str]) -> str:
        value = _spelled_value(match.group(2), match.group(4) or "")
        if value is None:
            return match.group()
        if match.group(3):
            return f"{match.group(1)}{value}.{_DIGIT_OF[match.group(3)[1]]}度"
        return f"{match.group(1)}{value}"

    def replace_second(match: re.Match[str]) -> str:
        value = _spelled_value(match.group(2))
        return match.group() if value is None else f"{match.group(1)}{value}"

    def replace_score(match: re.Match[str]) -> str:
        value = _spelled_value(match.group(2), "分")
        return match.group() if value is None else f"{match.group(1)}{value}"

    text = _SPELLED.sub(replace, text)
    text = _DEGREES.sub(replace_second, text)
    return _PAIN_SCORE.sub(replace_score, _SECOND.sub(replace_second, text))


_NUMBER = r"(\d{1,3}(?:\.\d+)?)"
# A number followed by one of these counts something else (doses, days, ages, times).
_NOT_A_READING = re.compile(
    r"\s*(?:(?:whole|full|entire|long|more|整)\s*)?(?:片|粒|颗|支|针|袋|瓶|盒|单位|u\b|iu\b|ml|毫升|mg(?!/dl)|毫克|克|g\b|次|天|岁|年|月|周|个月|"
    r"小时|分钟|min|mins|minutes|hours?\b|hrs|days?\b|weeks?\b|months?\b|years?\b|yrs|tablets|pills|units|点钟|点(?!\d)|am\b|"
    r"pm\b|o'?clock|号|楼|床|斤|公斤|kg|lbs|cm|厘米|块|元|%)",
)
_BREAK = r"[。！？!?;；\n]"
# For what a sentence asks, a full stop before a space ends it too (not 7.2). Not for finding
# a number after its word: "sats. 82", "approx. 1.8".
_SENTENCE_BREAK = rf"(?:{_BREAK}|\.(?=\s|$))"
_PAIN_GAP = r"[^\d。！？!?;；\n]{0,40}?"


def _governed(keyword: str) -> re.Pattern[str]:
    return re.compile(rf"(?:{keyword})")


_ANY_NUMBER = re.compile(_NUMBER)
_ANY_MEASURE = re.compile(
    r"血压|高压|低压|收缩压|舒张压|血糖|体温|心率|心跳|脉搏|血氧|饱和度"
    r"|(?<![a-z])(?:bp|blood pressure|systolic|diastolic|sugar|glucose|temp|temperature"
    r"|heart rate|pulse|spo2|sats?|oxygen)(?![a-z])"
)
_WINDOW = 28


def _governed_values(
    pattern: re.Pattern[str], text: str, *, percent: bool = False
) -> list[tuple[float, int, int]]:
    """For each measurement word, the first number after it (in its sentence, within a few
    characters) that is not a count of something else."""
    values = []
    for keyword in pattern.finditer(text):
        limit = keyword.end() + _WINDOW
        stop = re.search(_BREAK, text[keyword.end() : limit])
        if stop:
            limit = keyword.end() + stop.start()
        other = _ANY_MEASURE.search(text, keyword.end(), limit)
        if other:  # 低压有点高 九十二 高压138: the 138 is the other one's
            limit = other.start()
        for number in _ANY_NUMBER.finditer(text, keyword.end(), limit):
            value = _value_at(number, 1, text, percent=percent)
            if value is not None:
                values.append(value)
                break
    return values


_GLUCOSE = _governed(
    r"血糖|雪糖|测糖|指尖血|糖(?:只有|才|是|到了|降到|掉到)"
    r"|(?<![a-z])(?:blood sugar|sugars?|glucose|bg|bm|bgl)(?![a-z])"
)
_GLUCOSE_CONTEXT = re.compile(
    r"血糖|试纸|胰岛素|降糖|糖尿病|(?<![a-z])(?:blood sugar|glucose|insulin|diabet\w*|bg)(?![a-z])"
)
_MEASURED = _governed(
    r"测了|测的|测得|测出来|刚测|(?<![a-z])(?:meter says|reading|it says)(?![a-z])"
)
_GLUCOSE_UNIT = re.compile(r"\s*(?:mg\s*/?\s*dl|mgdl)")
_PAIR = re.compile(
    r"(?<![\d.])(\d{2,3})\s*(?:/|／|over|比|-)\s*(\d{2,3})(?![\d.]|\s*(?:分|of 10|out of))"
)
# With blood pressure in the message, two numbers side by side are a reading too (195 110).
_LOOSE_PAIR = re.compile(r"(?<![\d.])(\d{2,3})\s*[,， ]\s*(\d{2,3})(?![\d.]|\s*(?:分|次|天|岁))")
_BP_CONTEXT = re.compile(
    r"血压|高压|低压|收缩压|舒张压|降压|(?<![a-z])(?:bp|blood pressure|mmhg)(?![a-z])"
)
# "80都不到", "under 80": a value below the number written.
_UNDER = re.compile(r"\s*(?:都|还|也)?(?:不到|没到|以下)")
_SYSTOLIC = _governed(
    r"高压|收缩压|上压|上面的|血压|(?<![a-z])(?:systolic|top number|bp)(?![a-z])|blood pressure"
)
_DIASTOLIC = _governed(r"低压|舒张压|下压|下面的|(?<![a-z])(?:diastolic|bottom number)(?![a-z])")
_SPO2 = _governed(
    r"血氧|氧饱和度|饱和度|指脉氧|氧气"
    r"|(?<![a-z])(?:spo2|sp02|sats?|o2 sats?|o2|pulse ox"
    r"|oxygen(?: level| saturation| sat)?)(?![a-z])"
)
_HEART_RATE = _governed(r"心率|心跳|脉搏|(?<![a-z])(?:heart rate|hr|pulse|heartrate)(?![a-z])")
_HEART_RATE_UNIT = re.compile(
    rf"{_NUMBER}\s*多?\s*(?:次/分|次每分|下/分|次一分钟|下每分钟|bpm|beats)"
)
_TEMPERATURE = _governed(
    r"体温|发烧|发热|高烧|烧到|烧了"
    r"|(?<![a-z])(?:temp|temperature|fever of|fever|thermometer)(?![a-z])"
)
_FEVER_WORDS = re.compile(
    r"发烧|发热|高烧|烧到|体温|寒战|发冷|打摆子|冷得发抖"
    r"|(?<![a-z])(?:fever|feverish|burning up|temp|temperature|chills|rigors|shivering|hot)"
    r"(?![a-z])"
)
_BARE_GLUCOSE = re.compile(r"(?<![\d./])(\d{1,2}\.\d)(?![\d./%])")
# "只有2.1mmol": a number in mmol/L is a blood sugar in a patient's message, unless the message
# names another analyte measured in mmol/L (potassium, cholesterol…).
_MMOL_READING = re.compile(r"(?<![\d./])(\d{1,2}(?:\.\d{1,2})?)\s*(?:mmol|毫摩)")
_OTHER_MMOL_ANALYTE = re.compile(
    r"钾|钠|钙|镁|氯|胆固醇|甘油三酯|血脂|低密度|高密度|尿酸|肌酐|尿素|乳酸|"
    r"(?<![a-z])(?:potassium|sodium|calcium|magnesium|chloride|cholesterol|ldl|hdl|"
    r"triglycerides?|lipids?|urate|uric|creatinine|urea|lactate|k\+?|na\+?)(?![a-z])"
)
_BARE_DECIMAL = re.compile(r"(?<![\d./])(\d{2}\.\d)(?![\d./%])")
_TEMPERATURE_UNIT = re.compile(
    rf"{_NUMBER}\s*(度(?:\d)?|°\s*[cf]?|℃|℉|c(?![a-z])|f(?![a-z])|degrees?)"
)
_PAIN = re.compile(
    r"(?:疼痛评分|疼痛|评分|打分|疼|痛"
    r"|(?<![a-z])(?:pain score|pain level|pain|hurts|scale)(?![a-z]))"
    rf"{_PAIN_GAP}{_NUMBER}\s*(分|/\s*10(?!\d)|out of 10|outta 10|of 10|out of ten|/\s*ten)"
)
_PAIN_WORD = re.compile(r"疼|痛|(?<![a-z])(?:pain|hurts|sore|agony)(?![a-z])")
_BARE_SCORE = re.compile(
    r"(?<![\d./])(\d{1,2})\s*(?:/\s*10(?!\d)|out of 10|outta 10|of 10|out of ten|分(?!钟))"
)
_COMPARATIVE_BEFORE = re.compile(
    r"(?:低于|高于|超过|小于|大于|不到|below|above|under|over|less than|more than"
    r"|greater than|higher than|lower than)\s*$"
)
_BP_OVER = re.compile(r"(\d{2,3})\s*over\s*$")
_COMPARATIVE_AFTER = re.compile(
    r"^\s*(?:以下|以上|以内|多少|or (?:less|more|lower|higher|above|below))"
)
_QUESTION = re.compile(
    r"[吗么嘛?？]|怎么办|要不要|需不需要|需要|该|算|是否|应该|多少"
    r"|(?<![a-z])(?:should|what|when|how|is it|do i|does|is that|normal)(?![a-z])"
)


def _sentence_of(text: str, start: int, end: int) -> str:
    left = max((m.end() for m in re.finditer(_SENTENCE_BREAK, text[:start])), default=0)
    right = re.search(_SENTENCE_BREAK, text[end:])
    return text[left : end + (right.start() if right else len(text) - end)]


def _is_question_about_threshold(text: str, start: int, end: int) -> bool:
    window = max(0, start - 12)
    pair = _BP_OVER.search(text[window:start])
    if pair is not None:
        # "196 over 118" is one blood pressure, not "over 118": asked about as its first
        # number is ("is over 180 over 110 dangerous?").
        return _is_question_about_threshold(
            text, window + pair.start(), window + pair.start() + len(pair.group(1))
        )
    if not (_COMPARATIVE_BEFORE.search(text[window:start]) or _COMPARATIVE_AFTER.match(text[end:])):
        return False
    return bool(_QUESTION.search(_sentence_of(text, start, end)))


def _value_at(
    match: re.Match[str], group: int, text: str, *, percent: bool = False
) -> tuple[float, int, int] | None:
    start, end = match.span(group)
    if percent and text[end:].lstrip().startswith("%"):
        return float(match.group(group)), start, end
    if _NOT_A_READING.match(text, end):
        return None
    try:
        return float(match.group(group)), start, end
    except ValueError:
        return None


def readings(text: str) -> list[Reading]:
    """Every measurement in ``text`` (normalised), in the order written, units converted."""
    found: list[Reading] = []
    taken: set[tuple[str, int]] = set()

    def add(kind: VitalKind, value: float, start: int, end: int) -> None:
        if (kind, start) in taken:
            return
        taken.add((kind, start))
        found.append(
            Reading(kind, value, start, end, _is_question_about_threshold(text, start, end))
        )

    bp_context = _BP_CONTEXT.search(text)
    if bp_context or _PAIR.search(text):
        pairs = [*_PAIR.finditer(text), *(_LOOSE_PAIR.finditer(text) if bp_context else ())]
        for match in pairs:
            high, low = int(match.group(1)), int(match.group(2))
            if 60 <= high <= 300 and 30 <= low < high:
                add("systolic", high, match.start(1), match.end(1))
                add("diastolic", low, match.start(2), match.end(2))
    pair_spans = [(r.start, r.end) for r in found]

    def inside_pair(start: int) -> bool:
        return any(low <= start < high + 8 for low, high in pair_spans)

    for pattern, kind in ((_SYSTOLIC, "systolic"), (_DIASTOLIC, "diastolic")):
        for value in _governed_values(pattern, text):
            if 40 <= value[0] <= 300 and not inside_pair(value[1]):
                add(kind, *value)  # type: ignore[arg-type]
    glucose_values = _governed_values(_GLUCOSE, text)
    if _GLUCOSE_CONTEXT.search(text) and not bp_context:
        # 血糖试纸…我今天测的2.8, "had my insulin … 2.3": a meter reading in a message about
        # blood sugar (a decimal that is not a temperature).
        glucose_values += [
            v
            for v in _governed_values(_MEASURED, text)
            if v[0] <= 33.3 and "." in text[v[1] : v[2]]
        ]
        glucose_values += [
            (float(m.group(1)), *m.span(1))
            for m in _BARE_GLUCOSE.finditer(text)
            if 1.0 <= float(m.group(1)) <= 33.3 and not _NOT_A_READING.match(text, m.end(1))
        ]
    if not _OTHER_MMOL_ANALYTE.search(text):
        known = {start for _, start, _ in glucose_values}
        glucose_values += [
            (float(m.group(1)), *m.span(1))
            for m in _MMOL_READING.finditer(text)
            if m.start(1) not in known and 0.5 <= float(m.group(1)) <= 40
        ]
    for value in glucose_values:
        if value[0] <= 0 or inside_pair(value[1]):
            continue
        amount = value[0]
        if _GLUCOSE_UNIT.match(text, value[2]) or amount > 35:
            amount = round(amount / 18.0, 1)
        add("glucose", amount, value[1], value[2])
    for value in _governed_values(_SPO2, text, percent=True):
        if 50 <= value[0] <= 100:
            add("spo2", *value)
    for value in _governed_values(_HEART_RATE, text):
        if 20 <= value[0] <= 260 and not inside_pair(value[1]):
            add("heart_rate", *value)
    for match in _HEART_RATE_UNIT.finditer(text):
        if 20 <= float(match.group(1)) <= 260:
            add("heart_rate", float(match.group(1)), *match.span(1))
    for match in _TEMPERATURE_UNIT.finditer(text):
        amount = float(match.group(1))
        unit = match.group(2)
        if unit.startswith("度") and len(unit) == 2:
            amount = float(f"{match.group(1).split('.')[0]}.{unit[1]}")
        if 90 <= amount <= 110 and ("f" in unit or "℉" in unit or "degree" in unit):
            amount = round((amount - 32) * 5 / 9, 1)
        if 34 <= amount <= 43:
            add("temperature", amount, match.start(1), match.end(2))
    if _FEVER_WORDS.search(text):
        # burning up, 38.8: a bare temperature next to words about fever.
        for match in _BARE_DECIMAL.finditer(text):
            if 37.0 <= float(match.group(1)) <= 43.0:
                add("temperature", float(match.group(1)), *match.span(1))
    for value in _governed_values(_TEMPERATURE, text):
        amount = value[0]
        if 95 <= amount <= 110:
            amount = round((amount - 32) * 5 / 9, 1)
        if 34 <= amount <= 43:
            add("temperature", amount, value[1], value[2])
    for match in _PAIN.finditer(text):
        amount = float(match.group(1))
        if 0 <= amount <= 10:
            add("pain_score", amount, match.start(1), match.end(2))
    if _PAIN_WORD.search(text):
        # pain 9/10 after surgery, now 2/10: each score counts, not only the first.
        for match in _BARE_SCORE.finditer(text):
            if 0 <= float(match.group(1)) <= 10:
                add("pain_score", float(match.group(1)), *match.span(1))
    found.sort(key=lambda reading: reading.start)
    return [_under(reading, text) for reading in found]


def _under(reading: Reading, text: str) -> Reading:
    """A reading written as "below N" (血压80都不到) is taken as just under N."""
    if reading.kind != "pain_score" and _UNDER.match(text, reading.end):
        return dataclasses.replace(reading, value=reading.value - 0.01)
    return reading
