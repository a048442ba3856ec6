"""The category model: which topic a message is about (medication, parking, a doctor's conduct…).

A multinomial naive Bayes over character 1–3-grams of Chinese runs, English words and word
bigrams, and a bilingual cue lexicon (:data:`CATEGORY_CUES`) that lets the Chinese and English
examples teach the same feature. It is trained on first use from
``templates/triage/messages.csv`` (the earlier labelled messages and the tuning corpus's
complaints, questions and reports mapped to their categories) and cached for the process.

The category says who owns a ticket (the routing table) and what a question is about; it
does not decide danger — that is :mod:`suifang.tickets.danger`'s job, which outranks it.

Why a hand-written naive Bayes rather than scikit-learn: the model is ~80 lines, trains on
~2,300 short messages in a fraction of a second, and needs nothing beyond the standard
library — scikit-learn would add numpy and scipy (tens of MB of native wheels) to every
hospital server for a model this small, and a discriminative model measured no better here.
Naive Bayes' posteriors are over-confident, so they are softened by a temperature.
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import math
import random
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Literal

from suifang.core.categories import CATEGORY_IDS
from suifang.core.errors import ValidationFailed

__all__ = [
    "CATEGORY_CUES",
    "LANGUAGES",
    "Classifier",
    "LabelledMessage",
    "NaiveBayes",
    "Prediction",
    "default_classifier",
    "detect_language",
    "load_dataset",
    "message_features",
    "split",
]

LANGUAGES: tuple[str, ...] = ("zh-CN", "en")
Language = Literal["zh-CN", "en"]
#: The categories the model learns: every category but the platform's own tasks.
CATEGORIES: tuple[str, ...] = tuple(c for c in CATEGORY_IDS if c != "call_task")

#: Words that point at a category in either language. Each category that any of them names
#: becomes one extra feature, so "停车" and "parking" teach the model the same thing.
# fmt: off
CATEGORY_CUES: Mapping[str, tuple[str, ...]] = {
    "clinical_symptom": (
        "头晕", "头疼", "头痛", "发烧", "发热", "咳嗽", "心慌", "心跳", "血压", "血糖", "肿",
        "喘", "胸口", "胸闷", "胸痛", "恶心", "吐", "拉肚子", "便秘", "乏力", "没力气", "累",
        "麻", "疼", "痛", "晕", "不舒服", "症状", "dizzy", "headache", "fever", "cough",
        "palpitation", "heart racing", "blood pressure", "bp", "blood sugar", "swollen",
        "breath", "chest", "nausea", "vomit", "tired", "fatigue", "numb", "pain", "sick",
        "faint", "sweating",
    ),
    "medication": (
        "药", "吃药", "服用", "片", "剂量", "副作用", "阿司匹林", "氯吡格雷", "替格瑞洛",
        "波立维", "他汀", "降压药", "胰岛素", "二甲双胍", "硝酸甘油", "华法林", "双抗", "停药",
        "漏服", "忘记吃", "pill", "tablet", "medication", "meds", "medicine", "dose",
        "side effect", "aspirin", "clopidogrel", "ticagrelor", "statin", "insulin",
        "metformin", "nitroglycerin", "warfarin", "blood thinner", "prescription", "pharmacy",
        "took", "take", "forgot",
    ),
    "wound_care": (
        "伤口", "刀口", "穿刺", "敷料", "纱布", "拆线", "换药", "结痂", "疤", "缝", "渗血",
        "流脓", "化脓", "红肿", "胶布", "洗澡", "碰水", "wound", "incision", "dressing",
        "stitches", "staples", "scar", "puncture", "bandage", "pus", "shower", "suture",
        "steri", "tape", "bruise",
    ),
    "rehabilitation": (
        "康复", "锻炼", "走路", "步", "上下楼", "楼梯", "开车", "上班", "运动", "助行器",
        "拐杖", "关节", "脱位", "爬山", "游泳", "骑车", "训练", "坐飞机", "提重物", "弯腰",
        "侧睡", "夫妻生活", "rehab", "exercise", "walk", "walking", "stairs", "driving",
        "drive", "work", "gym", "walker", "crutches", "hip", "knee", "physio", "fly", "lift",
        "cycling", "sex", "heart rate",
    ),
    "diet_lifestyle": (
        "吃", "喝", "饮食", "水果", "盐", "酒", "烟", "戒烟", "咖啡", "茶", "早餐", "鸡蛋",
        "减肥", "体重", "油", "肉", "主食", "粗粮", "海鲜", "睡", "熬夜", "保健品", "鱼油",
        "eat", "drink", "diet", "fruit", "salt", "alcohol", "wine", "beer", "smoking", "smoke",
        "quit", "coffee", "tea", "breakfast", "eggs", "weight", "oil", "sleep", "supplement",
        "fish oil", "sauna", "vaping", "food",
    ),
    "appointment": (
        "复诊", "预约", "挂号", "号", "门诊", "复查", "改约", "取消", "专家", "约", "看诊",
        "加号", "时间", "appointment", "book", "booking", "reschedule", "clinic", "cancel",
        "follow-up", "slot", "consultation", "visit", "check-up", "outpatient", "see dr",
        "confirmation",
    ),
    "test_results": (
        "结果", "报告", "化验", "检查", "指标", "偏高", "偏低", "正常值", "血常规", "肝功能",
        "肌酐", "血脂", "糖化", "心电图", "彩超", "ct", "结节", "箭头", "阳性", "results",
        "report", "test", "blood test", "level", "high", "low", "ecg", "ultrasound", "biopsy",
        "nodule", "hba1c", "ldl", "creatinine", "potassium", "inr", "came back", "enzymes",
    ),
    "insurance": (
        "医保", "报销", "医保卡", "异地", "农合", "新农合", "理赔", "商业保险", "统筹", "慢特病",
        "备案", "结算单", "insurance", "insured", "claim", "claims", "reimburse",
        "reimbursement", "covered", "coverage", "policy", "yibao",
    ),
    "billing": (
        "费", "钱", "收费", "医保", "报销", "发票", "押金", "退费", "结算", "自费", "缴费",
        "扣", "清单", "账", "收费员", "bill", "billed", "charge", "charged", "invoice", "receipt",
        "deposit", "refund", "pay", "payment", "cost", "price", "expensive", "cashier", "fee",
    ),
    "parking": (
        "停车", "车位", "停车场", "车库", "车", "停", "出口", "缴费", "电动车", "接驳",
        "parking", "park", "car park", "car", "bay", "bays", "garage", "bike", "e-bike",
        "ticket", "drop-off", "barrier",
    ),
    "food": (
        "饭", "餐", "食堂", "菜", "粥", "汤", "订餐", "送餐", "早饭", "午饭", "晚饭", "吃不饱",
        "咸", "馒头", "包子", "外卖", "点心", "meal", "meals", "food", "canteen", "lunch",
        "breakfast", "dinner", "soup", "portion", "halal", "vegetarian", "diabetic meal",
        "cold",
    ),
    "staff_attitude": (
        "态度", "工作人员", "不耐烦", "凶", "骂", "冷冰冰", "敷衍", "投诉", "不理", "粗鲁",
        "阴阳怪气", "保安", "导诊", "前台", "保洁", "客服", "rude", "attitude", "impatient",
        "curt", "ignored", "staff", "receptionist", "guard", "porter", "cleaner", "hung up",
    ),
    "doctor_conduct": (
        "医生", "大夫", "主任", "主治", "专家", "查房", "解释", "误诊", "诊断", "开药",
        "说话太快", "没听懂", "推诿", "不解释", "doctor", "dr", "consultant", "surgeon",
        "registrar",
        "ward round", "explain", "explained", "misdiagnosed", "diagnosis", "dismissive",
        "rushed", "talked down",
    ),
    "nursing_care": (
        "护士", "护士长", "护工", "打针", "扎针", "换药", "输液", "按铃", "呼叫铃", "护理", "nurse",
        "nurses", "nursing", "call bell", "drip", "cannula", "injection", "sister", "midwife",
        "rough",
    ),
    "waiting_time": (
        "等了", "排队", "等太久", "等很久", "半天", "叫号", "候诊", "挂号", "约不上", "预约",
        "几个小时", "一上午", "一下午", "太慢", "waited", "waiting", "wait", "queue", "queued",
        "hours",
        "late", "slot", "slots", "delay", "delayed",
    ),
    "environment": (
        "厕所", "卫生间", "脏", "吵", "空调", "冷", "热水", "电梯", "床单", "蟑螂", "蚊子",
        "味", "灯", "抽烟", "垃圾", "扶手", "椅子", "暖气", "漏风", "环境", "卫生", "toilet",
        "toilets", "dirty", "filthy", "noisy", "noise", "air con", "lift", "lifts", "sheets",
        "cockroach", "smell", "smelled", "smoking", "rubbish", "bathroom", "seats", "window",
        "hot water", "freezing",
    ),
    "suggestion": (
        "建议", "希望", "能不能", "可以考虑", "要是能", "提个", "改进", "增加", "字大", "语音",
        "小程序", "公众号", "讲座", "suggestion", "suggest", "would be great", "would help",
        "please consider", "could", "maybe", "app", "font", "kiosk", "signage", "improve",
        "it would",
    ),
    "praise": (
        "感谢", "谢谢", "辛苦", "点赞", "赞", "表扬", "锦旗", "耐心", "贴心", "负责", "好",
        "暖", "专业", "thanks", "thank", "amazing", "wonderful", "kind", "excellent", "great",
        "lovely", "grateful", "reassuring", "helped",
    ),
    "medical_records": (
        "病历", "复印", "出院小结", "诊断证明", "证明", "病案", "片子", "影像", "打印",
        "电子版", "记录", "盖章", "病假条", "邮寄", "刻盘", "records", "record", "copy",
        "discharge summary", "certificate", "print", "images", "disc", "letter", "notes",
        "sick note", "post",
    ),
    "psychological": (
        "焦虑", "害怕", "怕", "担心", "睡不着", "心情", "低落", "难受", "哭", "孤单", "压力",
        "绝望", "希望", "心理", "噩梦", "胡思乱想", "紧张", "累赘", "不想活", "自杀",
        "anxious", "anxiety", "scared", "worried", "worry", "low", "cry", "lonely", "hopeless",
        "burden", "panic", "counsellor", "depressed", "stress", "afraid", "die", "life",
    ),
    "other": (
        "收到", "好的", "谁", "短信", "号码", "电话", "地址", "探视", "联系", "在吗", "发错",
        "wifi", "公众号", "陪护", "去世", "人工", "机器人", "ok", "who", "texting", "number",
        "address", "visiting", "contact", "received", "mistake", "genuine", "real person",
        "moved", "passed away",
    ),
}
# fmt: on

# Model settings, chosen on stratified 80/20 splits of messages.csv (see the tests).
_SMOOTHING = 0.3  # Lidstone alpha: 0.3 beat 0.1 and 1.0 on held-out accuracy
_TEMPERATURE = 3.5  # softens NB's over-confident posteriors: mean confidence ≈ accuracy
_CUE_WEIGHT = 3  # a category cue counts like three n-grams …
_CUES_WEIGHT = 2  # … and two or more cues of one category add two more
_MAX_CLASSIFIED_CHARS = 2000  # the category is clear long before; danger scans everything

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_HAS_CJK = re.compile(f"[{_CJK}]")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_RUN = re.compile(f"[{_CJK}0]+|[a-z][a-z']*")
_LATIN_WORD = re.compile("[a-z]+")


def _normalize(text: str) -> str:
    """Full-width forms folded (NFKC), lower case, curly apostrophes straightened."""
    return unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'").replace("`", "'")


def detect_language(text: str) -> Language:
    """``zh-CN`` or ``en`` by script: Chinese characters against English words.

    One Chinese character carries about as much as one English word, so "医生 my wound is
    red" is English and "请问CT结果出来了吗" is Chinese. Text with neither is ``zh-CN``, the
    platform's primary locale.
    """
    normalized = _normalize(text)
    chinese = len(_HAS_CJK.findall(normalized))
    english = len(_LATIN_WORD.findall(normalized))
    return "en" if english > chinese else "zh-CN"


def _cue_patterns() -> dict[str, re.Pattern[str]]:
    patterns = {}
    for category, cues in CATEGORY_CUES.items():
        chinese = [re.escape(cue) for cue in cues if _HAS_CJK.search(cue)]
        english = [re.escape(cue) for cue in cues if not _HAS_CJK.search(cue)]
        alternatives = [*chinese]
        if english:
            alternatives.append(f"(?<![a-z])(?:{'|'.join(english)})")
        patterns[category] = re.compile("|".join(alternatives))
    return patterns


_CUES = _cue_patterns()


def message_features(text: str) -> Counter[str]:
    """The bag of features the classifier sees.

    Chinese: character 1-, 2- and 3-grams within each run of Chinese (numbers become ``0``,
    so 38.5度 and 39度 look alike). English: words and word bigrams. Both: one feature per
    category whose cue words occur (see :data:`CATEGORY_CUES`).
    """
    normalized = _NUMBER.sub("0", _normalize(text[:_MAX_CLASSIFIED_CHARS]))
    features: Counter[str] = Counter()
    words: list[str] = []
    for match in _RUN.finditer(normalized):
        run = match.group()
        if run[0].isascii() and run[0] != "0":
            word = run.strip("'")
            words.append(word)
            features["w:" + word] = 1
            continue
        for size in (1, 2, 3):
            for start in range(len(run) - size + 1):
                features[run[start : start + size]] = 1
    for first, second in itertools.pairwise(words):
        features[f"b:{first}_{second}"] = 1
    for category, pattern in _CUES.items():
        hits = len(pattern.findall(normalized))
        if hits:
            features["k:" + category] = _CUE_WEIGHT
        if hits >= 2:
            features["k2:" + category] = _CUES_WEIGHT
    return features


# --------------------------------------------------------------------------- dataset


@dataclass(frozen=True, slots=True)
class LabelledMessage:
    """One row of ``templates/triage/messages.csv``."""

    text: str
    language: Language
    category: str


_HEADER = ["text", "language", "category"]


def load_dataset(path: Path | None = None) -> list[LabelledMessage]:
    """The labelled messages (the shipped ``messages.csv`` unless ``path`` is given).

    Columns ``text,language,category``. A bad row is refused with its line number and the
    column at fault; the message text itself is never quoted in the error.
    """
    if path is None:
        resource = files("suifang.templates") / "triage" / "messages.csv"
        content, origin = resource.read_text(encoding="utf-8"), "templates/triage/messages.csv"
    else:
        try:
            content, origin = path.read_text(encoding="utf-8"), str(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise ValidationFailed(f"{path}: cannot read: {exc}") from None
    reader = csv.DictReader(io.StringIO(content))
    if reader.fieldnames != _HEADER:
        raise ValidationFailed(
            f"{origin}:1: the header must be {','.join(_HEADER)}, "
            f"not {','.join(reader.fieldnames or [])}"
        )
    rows = []
    for row in reader:
        where = f"{origin}:{reader.line_num}"
        if None in row or any(value is None for value in row.values()):
            raise ValidationFailed(
                f"{where}: expected {len(_HEADER)} columns ({','.join(_HEADER)})"
            )
        if not row["text"].strip():
            raise ValidationFailed(f"{where}: text is empty")
        if row["language"] not in LANGUAGES:
            raise ValidationFailed(
                f"{where}: language {row['language']!r} is not one of {', '.join(LANGUAGES)}"
            )
        if row["category"] not in CATEGORIES:
            raise ValidationFailed(
                f"{where}: category {row['category']!r} is not one of {', '.join(CATEGORIES)}"
            )
        rows.append(LabelledMessage(row["text"], row["language"], row["category"]))  # type: ignore[arg-type]
    if not rows:
        raise ValidationFailed(f"{origin}: no labelled messages")
    return rows


def split(
    rows: Sequence[LabelledMessage], holdout: float = 0.2, seed: int = 0
) -> tuple[list[LabelledMessage], list[LabelledMessage]]:
    """``(train, held_out)``: the same share of every category held out, reproducibly."""
    if not 0 < holdout < 1:
        raise ValueError(f"holdout must be between 0 and 1, got {holdout}")
    by_category: dict[str, list[LabelledMessage]] = defaultdict(list)
    for row in rows:
        by_category[row.category].append(row)
    rng = random.Random(seed)
    train: list[LabelledMessage] = []
    held_out: list[LabelledMessage] = []
    for category in sorted(by_category):
        items = list(by_category[category])
        rng.shuffle(items)
        cut = round(len(items) * holdout)
        held_out.extend(items[:cut])
        train.extend(items[cut:])
    return train, held_out


# --------------------------------------------------------------------------- classifier


class NaiveBayes:
    """Multinomial naive Bayes with Lidstone smoothing, stored sparsely.

    A feature's log-likelihood in a class it never appeared in is that class's ``unseen``
    value; only the differences from it are stored, per feature, for the classes that saw the
    feature. Scoring a message then touches just those few entries.
    """

    def __init__(
        self,
        labels: tuple[str, ...],
        base: list[float],
        unseen: list[float],
        deltas: dict[str, list[tuple[int, float]]],
    ) -> None:
        self.labels = labels
        self._base = base
        self._unseen = unseen
        self._deltas = deltas

    @classmethod
    def fit(cls, examples: Sequence[tuple[Counter[str], str]], alpha: float) -> NaiveBayes:
        labels = tuple(sorted({label for _, label in examples}))
        index = {label: i for i, label in enumerate(labels)}
        documents = [0] * len(labels)
        counts: list[Counter[str]] = [Counter() for _ in labels]
        for features, label in examples:
            documents[index[label]] += 1
            counts[index[label]].update(features)
        vocabulary = set().union(*counts)
        base, unseen = [], []
        deltas: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for i, class_counts in enumerate(counts):
            total = sum(class_counts.values()) + alpha * len(vocabulary)
            unseen_log = math.log(alpha / total)
            base.append(math.log(documents[i] / len(examples)))
            unseen.append(unseen_log)
            for feature, count in class_counts.items():
                deltas[feature].append((i, math.log((count + alpha) / total) - unseen_log))
        return cls(labels, base, unseen, dict(deltas))

    def posterior(self, features: Counter[str], temperature: float) -> tuple[list[float], int]:
        """Class probabilities, and how many of the message's features the model knows."""
        scores = list(self._base)
        known = 0
        for feature, count in features.items():
            entries = self._deltas.get(feature)
            if entries is None:
                continue
            known += count
            for i, delta in entries:
                scores[i] += count * delta
        for i, unseen in enumerate(self._unseen):
            scores[i] += known * unseen
        top = max(scores)
        weights = [math.exp((score - top) / temperature) for score in scores]
        total = sum(weights)
        return [weight / total for weight in weights], known


@dataclass(frozen=True, slots=True)
class Prediction:
    """What the model alone says about a message (no lexicon, no policy)."""

    category: str
    confidence: float
    known_features: int
    """How many of the message's features the model has seen; 0 means nothing to go on."""


class Classifier:
    """The category model over :func:`message_features`. Build with :meth:`train`."""

    def __init__(self, model: NaiveBayes) -> None:
        self._model = model

    @classmethod
    def train(cls, rows: Iterable[LabelledMessage]) -> Classifier:
        """Fit the model; deterministic (the same rows give the same model)."""
        examples = [(message_features(row.text), row.category) for row in rows]
        if not examples:
            raise ValidationFailed("cannot train the triage classifier on no messages")
        return cls(NaiveBayes.fit(examples, _SMOOTHING))

    @property
    def categories(self) -> tuple[str, ...]:
        return self._model.labels

    def ranked(self, text: str) -> list[tuple[str, float]]:
        """Every category with its probability, most likely first (empty: nothing known)."""
        probabilities, known = self._model.posterior(message_features(text), _TEMPERATURE)
        if known == 0:
            return []
        return sorted(
            zip(self._model.labels, probabilities, strict=True), key=lambda pair: -pair[1]
        )

    def predict(self, text: str) -> Prediction:
        """The most likely category and its probability.

        Text without a single known feature (empty, whitespace, emoji only) is ``other`` with
        confidence 0.
        """
        if not isinstance(text, str):
            raise ValidationFailed(f"triage text must be a string, not {type(text).__name__}")
        probabilities, known = self._model.posterior(message_features(text), _TEMPERATURE)
        if known == 0:
            return Prediction("other", 0.0, 0)
        best = max(range(len(probabilities)), key=probabilities.__getitem__)
        return Prediction(self._model.labels[best], probabilities[best], known)


@functools.cache
def default_classifier() -> Classifier:
    """The classifier trained on the shipped messages, once per process."""
    return Classifier.train(load_dataset())
